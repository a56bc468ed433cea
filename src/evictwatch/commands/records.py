"""``get``, ``describe`` and ``watch``: the records, as kubectl users expect to read them.

``-l`` selects on the Pod's labels (``spec.pod.labels``), evaluated here after the list: a
record carries one label of its own (``app.kubernetes.io/managed-by``) because every label
costs the webhook's create, which an eviction waits for (docs/DESIGN.md, "Record shape").
Server-side narrowing is there for the fields that matter at scale (``--field-selector`` with
kubectl; the namespace here).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any

import click
import yaml
from lightkube.config.kubeconfig import SingleConfig

from .. import views
from ..kube.api import JsonApi
from ..model.podeviction import record_path
from .connect import EXIT_FAILED, resolve_or_exit, run_api
from .follow import Printer, stream_for
from .options import cluster_options, filter_options, namespace_options, parse_labels, parse_since

_RESOURCE_PREFIXES = (
    "podeviction.evictwatch.io/",
    "podevictions.evictwatch.io/",
    "podeviction/",
    "podevictions/",
    "pev/",
)
LISTING = "list podevictions.evictwatch.io"


async def list_records(connection: SingleConfig, namespace: str | None) -> list[dict[str, Any]]:
    """Every record of ``namespace`` (None: all), in pages, through the one HTTP stack."""
    api = JsonApi(connection)
    try:
        return [record async for record in api.list_items(record_path(namespace or ""))]
    finally:
        await api.close()


def _print_list(chosen: list[Mapping[str, Any]], output: str, headers: bool, now: datetime.datetime) -> None:
    if output in ("json", "yaml"):
        document = {
            "apiVersion": "v1",
            "kind": "List",
            "items": [views.without_managed_fields(r) for r in chosen],
        }
        text = (
            json.dumps(document, indent=2) if output == "json" else yaml.safe_dump(document, sort_keys=False)
        )
        click.echo(text.rstrip("\n"))
    elif output == "name":
        for record in chosen:
            click.echo(views.resource_name(record))
    elif chosen:
        wide = output == "wide"
        columns = views.COLUMNS + (views.WIDE if wide else ())
        click.echo(views.table([views.row(r, now, wide) for r in chosen], columns if headers else None))


def _nothing_found(namespace: str | None, hidden: int) -> str:
    where = f" in namespace {namespace}" if namespace else ""
    note = f" ({hidden} of Pods that did not exist hidden: --show-missing)" if hidden else ""
    return f"No evictions found{where}.{note}"


@click.command()
@namespace_options
@click.option("-o", "--output", type=click.Choice(["table", "wide", "json", "yaml", "name"]), default="table")
@filter_options
@click.option(
    "--sort-by", metavar="FIELD", help="A field path, as kubectl: .spec.attempts, .status.outcomeTime."
)
@click.option("--no-headers", is_flag=True, help="No header line in tables.")
@click.option("-w", "--watch", "follow", is_flag=True, help="After the list, print records as they change.")
@cluster_options
def get(
    namespace: str | None,
    all_namespaces: bool,
    output: str,
    source: str | None,
    outcome: str | None,
    since: str | None,
    selector: str | None,
    show_missing: bool,
    sort_by: str | None,
    no_headers: bool,
    follow: bool,
    kubeconfig: str | None,
    context: str | None,
) -> None:
    """List recorded evictions (NAMESPACE POD NODE SOURCE REQUESTER OUTCOME ATTEMPTS AGE)."""
    window, labels = parse_since(since), parse_labels(selector)
    try:
        order = views.sort_key(sort_by) if sort_by else None
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--sort-by") from None
    target = resolve_or_exit(kubeconfig, context)

    def choose(records: list[dict[str, Any]], show: bool) -> list[Mapping[str, Any]]:
        now = datetime.datetime.now(datetime.UTC)
        return views.select(
            records, source=source, outcome=outcome, since=window, labels=labels, show_missing=show, now=now
        )

    async def fetch() -> None:
        connection = target.connection()
        scope = None if all_namespaces else namespace or connection.namespace
        records = await list_records(connection, scope)
        chosen = choose(records, show_missing)
        if order is not None:
            chosen = sorted(chosen, key=order)
        now = datetime.datetime.now(datetime.UTC)
        if not chosen and output in ("table", "wide", "name"):
            click.echo(_nothing_found(scope, len(choose(records, True))), err=True)
        _print_list(chosen, output, not no_headers, now)
        if follow:
            printer = Printer(
                "json" if output in ("json", "yaml") else output,
                lambda r: bool(choose([dict(r)], show_missing)),
                show_headers=False,
            )
            for record in chosen:
                printer.remember(record)
            await stream_for(connection, scope, printer, None)

    run_api(fetch, target, LISTING)


def parse_describeresolve_or_exit(target: str, namespace: str | None) -> tuple[str | None, str]:
    """``NS/POD``, ``POD`` (with ``-n``), a record name, or ``podeviction.evictwatch.io/NAME``."""
    for prefix in _RESOURCE_PREFIXES:
        if target.startswith(prefix):
            return namespace, target[len(prefix) :]
    scope, sep, name = target.rpartition("/")
    if sep:
        if namespace and namespace != scope:
            raise click.BadParameter(f"{target} names namespace {scope}, but -n says {namespace}")
        return scope, name
    return namespace, target


@click.command()
@click.argument("target", metavar="NAMESPACE/POD | POD | RECORD")
@click.option("-n", "--namespace", help="The namespace (default: the context's).")
@cluster_options
def describe(target: str, namespace: str | None, kubeconfig: str | None, context: str | None) -> None:
    """Show one Pod's eviction record in full: timeline, requester, owner, PDB, why, deliveries.

    TARGET is NAMESPACE/POD, a Pod's name with -n, or the record's own name as
    'kubectl get pev' prints it (also podeviction.evictwatch.io/NAME, as '-o name' prints it).
    """
    scope, name = parse_describeresolve_or_exit(target, namespace)
    cluster = resolve_or_exit(kubeconfig, context)

    async def fetch() -> tuple[str, list[dict[str, Any]]]:
        connection = cluster.connection()
        where = scope or connection.namespace
        records = await list_records(connection, where)
        by_record = [r for r in records if (r.get("metadata") or {}).get("name") == name]
        by_pod = [r for r in records if ((r.get("spec") or {}).get("pod") or {}).get("name") == name]
        return where, by_record or by_pod

    where, found = run_api(fetch, cluster, "read podevictions.evictwatch.io")
    if not found:
        click.echo(f"error: no eviction recorded for {name} in namespace {where}", err=True)
        raise SystemExit(EXIT_FAILED)
    now = datetime.datetime.now(datetime.UTC)
    for index, record in enumerate(sorted(found, key=views.last_activity)):
        if index:
            click.echo("")
        click.echo(views.describe(record, now))


@click.command()
@namespace_options
@click.option("-o", "--output", type=click.Choice(["table", "wide", "json", "name"]), default="table")
@filter_options
@click.option("--no-headers", is_flag=True, help="No header line.")
@click.option("--timeout", type=float, default=None, help="Stop after this many seconds (exit 0).")
@cluster_options
def watch(
    namespace: str | None,
    all_namespaces: bool,
    output: str,
    source: str | None,
    outcome: str | None,
    since: str | None,
    selector: str | None,
    show_missing: bool,
    no_headers: bool,
    timeout: float | None,
    kubeconfig: str | None,
    context: str | None,
) -> None:
    """Stream evictions as they are recorded and as they settle (Ctrl-C stops: exit 130).

    One line each time a record's outcome or attempt count changes, with the time it was seen;
    -o json prints one JSON object per line.
    """
    window, labels = parse_since(since), parse_labels(selector)
    target = resolve_or_exit(kubeconfig, context)

    def keep(record: Mapping[str, Any]) -> bool:
        now = datetime.datetime.now(datetime.UTC)
        chosen = views.select(
            [record],
            source=source,
            outcome=outcome,
            since=window,
            labels=labels,
            show_missing=show_missing,
            now=now,
        )
        return bool(chosen)

    async def follow() -> None:
        connection = target.connection()
        scope = None if all_namespaces else namespace or connection.namespace
        await stream_for(connection, scope, Printer(output, keep, show_headers=not no_headers), timeout)

    run_api(follow, target, "watch podevictions.evictwatch.io")
