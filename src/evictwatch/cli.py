"""The command line: ``evictwatch`` (also installed as ``kubectl-evictwatch``)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import signal
import sys
from pathlib import Path
from typing import Any

import click
import httpx2
import yaml
from lightkube import AsyncClient

from . import views
from .config import ConfigError, load_config_file
from .kube.client import KubeConfigError, error_message, status_code
from .logsetup import setup_logging
from .model.types import Outcome, Source
from .records.install import CrdMissing
from .report.command import report_command
from .report.preview_command import dashboard_command

EXIT_CONFIG = 2
EXIT_CLUSTER = 3


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="evictwatch")
def main() -> None:
    """Capture every Pod eviction: who asked for it, why, and what came of it."""


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML settings file.")
@click.option(
    "--kubeconfig", type=click.Path(dir_okay=False), help="Default: $KUBECONFIG, ~/.kube/config, in-cluster."
)
@click.option(
    "--self-signed", is_flag=True, help="Generate a CA, serve with it, register the webhook to this process."
)
@click.option(
    "--port", type=int, default=None, help="Webhook port (overrides webhook.port; 0 picks a free one)."
)
@click.option(
    "--metrics-port", type=int, default=None, help="Metrics port (overrides metricsPort; 0 disables)."
)
@click.option("-m", "--module", "modules", multiple=True, help="Import this module of @on_eviction handlers.")
@click.option(
    "--file",
    "files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Load @on_eviction handlers from this Python file.",
)
@click.option("--install-crd/--no-install-crd", default=True, help="Create the CRD when it is missing.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None)
def run(
    config_path: str | None,
    kubeconfig: str | None,
    self_signed: bool,
    port: int | None,
    metrics_port: int | None,
    modules: tuple[str, ...],
    files: tuple[str, ...],
    install_crd: bool,
    log_format: str | None,
) -> None:
    """Run the operator (webhook, controller, watchers) until SIGINT or SIGTERM."""
    from .operator import Operator

    try:
        config = load_config_file(config_path)
        updates: dict[str, object] = {}
        if port is not None:
            updates["webhook"] = config.webhook.model_copy(update={"port": port})
        if metrics_port is not None:
            updates["metricsPort"] = metrics_port
        if log_format is not None:
            updates["logFormat"] = log_format
        config = config.model_copy(update=updates)
    except ConfigError as error:
        _fail(str(error), EXIT_CONFIG)
        return
    setup_logging(config.logLevel, config.logFormat)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        operator = Operator(
            config,
            kubeconfig=kubeconfig,
            self_signed=self_signed,
            install_crd=install_crd,
            handler_modules=modules,
            handler_files=files,
        )
        await operator.run_until(stop)

    try:
        asyncio.run(serve())
    except ConfigError as error:
        _fail(str(error), EXIT_CONFIG)
    except (KubeConfigError, CrdMissing) as error:
        _fail(str(error), EXIT_CLUSTER)
    except (ImportError, SyntaxError) as error:
        _fail(f"cannot load handlers: {error}", EXIT_CONFIG)


def _client(kubeconfig: str | None, namespace: str | None = None) -> AsyncClient:
    from .kube.client import make_client

    try:
        return make_client(kubeconfig, namespace=namespace)
    except KubeConfigError as error:
        _fail(str(error), EXIT_CLUSTER)
        raise


def _api_failure(error: httpx2.HTTPStatusError, what: str) -> None:
    """One clear line for the API errors a user can fix."""
    code = status_code(error)
    if code == 404:
        _fail(
            "the PodEviction CRD is not installed in this cluster: install the Helm chart, or run "
            "'evictwatch run' once (it installs the CRD)",
            EXIT_CLUSTER,
        )
    if code in (401, 403):
        _fail(f"no permission to {what}: {error_message(error)}", EXIT_CLUSTER)
    _fail(f"{what} failed: {error_message(error)}", EXIT_CLUSTER)


async def _records(client: AsyncClient, namespace: str) -> list[dict[str, Any]]:
    from .records.resource import PodEviction

    return [item.to_dict() async for item in client.list(PodEviction, namespace=namespace)]


kubeconfig_option = click.option(
    "--kubeconfig", type=click.Path(dir_okay=False), help="Default: $KUBECONFIG."
)


@main.command()
@click.option("-n", "--namespace", help="Only this namespace (default: the kubeconfig's).")
@click.option("-A", "--all-namespaces", is_flag=True, help="Every namespace.")
@click.option("-o", "--output", type=click.Choice(["table", "wide", "json", "yaml"]), default="table")
@click.option(
    "--source", type=click.Choice([s.value for s in Source]), help="Only evictions seen through this door."
)
@click.option("--outcome", type=click.Choice([o.value for o in Outcome]), help="Only this outcome.")
@click.option("--since", help="Only evictions active in this window: 30m, 12h, 7d.")
@kubeconfig_option
def get(
    namespace: str | None,
    all_namespaces: bool,
    output: str,
    source: str | None,
    outcome: str | None,
    since: str | None,
    kubeconfig: str | None,
) -> None:
    """List recorded evictions (NAMESPACE POD NODE SOURCE REQUESTER OUTCOME ATTEMPTS AGE)."""
    try:
        window = views.parse_duration(since) if since else None
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--since") from None

    async def fetch() -> list[dict[str, Any]]:
        client = _client(kubeconfig)
        try:
            return await _records(client, "*" if all_namespaces else namespace or client.namespace)
        except httpx2.HTTPStatusError as error:
            _api_failure(error, "list podevictions.evictwatch.io")
            raise
        finally:
            await client.close()

    now = datetime.datetime.now(datetime.UTC)
    chosen = views.select(asyncio.run(fetch()), source=source, outcome=outcome, since=window, now=now)
    if output == "json":
        click.echo(json.dumps({"apiVersion": "v1", "kind": "List", "items": chosen}, indent=2))
    elif output == "yaml":
        click.echo(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": chosen}, sort_keys=False))
    elif not chosen:
        click.echo("No evictions found.", err=True)
    else:
        wide = output == "wide"
        headers = views.COLUMNS + (views.WIDE if wide else ())
        click.echo(views.table([views.row(r, now, wide) for r in chosen], headers))


@main.command()
@click.argument("target", metavar="NAMESPACE/POD")
@kubeconfig_option
def describe(target: str, kubeconfig: str | None) -> None:
    """Show one Pod's eviction record in full: timeline, requester, owner, PDB, why, deliveries."""
    namespace, sep, pod = target.rpartition("/")

    async def fetch() -> list[dict[str, Any]]:
        client = _client(kubeconfig)
        try:
            records = await _records(client, namespace if sep else client.namespace)
        except httpx2.HTTPStatusError as error:
            _api_failure(error, "read podevictions.evictwatch.io")
            raise
        finally:
            await client.close()
        return [r for r in records if (r.get("spec") or {}).get("pod", {}).get("name") == pod]

    found = asyncio.run(fetch())
    if not found:
        _fail(f"no eviction recorded for Pod {target}", 1)
    for index, record in enumerate(sorted(found, key=views.last_activity)):
        if index:
            click.echo("")
        click.echo(views.describe(record))


@main.command()
@click.option("-n", "--namespace", help="Only this namespace (default: all).")
@click.option("--timeout", type=float, default=None, help="Stop after this many seconds.")
@kubeconfig_option
def watch(namespace: str | None, timeout: float | None, kubeconfig: str | None) -> None:
    """Stream evictions as they are recorded and as they settle."""
    from .kube.listwatch import ListWatch
    from .records.resource import PodEviction

    last: dict[str, tuple[str, int]] = {}

    async def show(kind: str, record: dict[str, Any]) -> None:
        if kind == "DELETED":
            return
        uid = str((record.get("metadata") or {}).get("uid", ""))
        state = (
            str((record.get("status") or {}).get("outcome") or "Pending"),
            int((record.get("spec") or {}).get("attempts") or 0),
        )
        if last.get(uid) != state:
            last[uid] = state
            cells = views.row(record, datetime.datetime.now(datetime.UTC))
            click.echo("   ".join(cells))

    async def follow() -> None:
        client = _client(kubeconfig)
        click.echo("   ".join(views.COLUMNS))
        lw = ListWatch(client, PodEviction, show, "cli-watch", namespace=namespace)
        try:
            await asyncio.wait_for(lw.run(), timeout)
        except TimeoutError:
            pass
        finally:
            await client.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(follow())


@main.command()
@click.argument("pod")
@click.option("-n", "--namespace", help="The Pod's namespace (default: the kubeconfig's).")
@click.option("--dry-run", is_flag=True, help="Ask the server to check the eviction without doing it.")
@click.option("--grace-period", type=int, default=None, help="deleteOptions.gracePeriodSeconds.")
@click.option(
    "--policy-version", type=click.Choice(["v1", "v1beta1"]), default="v1", help="Eviction body version."
)
@kubeconfig_option
def evict(
    pod: str,
    namespace: str | None,
    dry_run: bool,
    grace_period: int | None,
    policy_version: str,
    kubeconfig: str | None,
) -> None:
    """Evict a Pod through the Eviction API (as kubectl drain does), printing the server's answer.

    Exit codes: 0 evicted (201), 4 refused by a PodDisruptionBudget (429), 1 any other refusal.
    """
    from .kube.evict import evict_pod

    async def call() -> tuple[int, dict[str, Any], str]:
        client = _client(kubeconfig)
        try:
            ns = namespace or client.namespace
            code, body = await evict_pod(
                client, ns, pod, policy_version=policy_version, dry_run=dry_run, grace_period=grace_period
            )
            return code, body, ns
        finally:
            await client.close()

    code, body, ns = asyncio.run(call())
    suffix = " (dry run)" if dry_run else ""
    if code in (200, 201):
        click.echo(f"pod/{pod} evicted in {ns}{suffix}")
        return
    message = body.get("message") or body.get("raw") or ""
    click.echo(f"error: eviction of pod/{pod} in {ns} refused ({code}): {message}", err=True)
    sys.exit(4 if code == 429 else 1)


@main.command()
@click.option("--once", is_flag=True, help="Exit after the demo instead of waiting for Ctrl-C.")
@click.option(
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    help="json: one document {node, records} on stdout (progress goes to stderr).",
)
@click.option(
    "--node",
    "node_choice",
    type=click.Choice(["auto", "real", "fake"]),
    default="auto",
    help="auto: a real kubelet where the machine allows (root, cgroups, runc), else a Node object.",
)
def sandbox(once: bool, output: str, node_choice: str) -> None:
    """Try evictwatch without a cluster: a local control plane, the operator, a demo drain.

    Builds kube-apiserver on first use (a few minutes), starts it with etcd and
    kube-controller-manager on 127.0.0.1, runs the operator with a self-signed webhook, makes a
    demo Deployment with a PodDisruptionBudget, evicts (one allowed, one blocked, one dry run),
    and shows the records. As root, the Pods run on a real node (containerd and a kubelet,
    also built on first use). Everything stays up for kubectl until Ctrl-C.
    """
    from . import sandbox as demo
    from .testing.binaries import BinariesError
    from .testing.controlplane import ControlPlane, ControlPlaneError
    from .testing.node import NodeError
    from .testing.node_binaries import NodeBinariesError

    setup_logging("WARNING")

    def say(text: str) -> None:
        click.echo(f"sandbox: {text}", err=output == "json")

    try:
        say("starting etcd, kube-apiserver and kube-controller-manager ...")
        cp = ControlPlane(with_controller_manager=True).start()
    except (BinariesError, ControlPlaneError) as error:
        _fail(str(error), EXIT_CLUSTER)
        return
    try:
        real_node = demo.start_node(cp, node_choice, say)
    except (NodeError, NodeBinariesError) as error:
        cp.stop()
        _fail(str(error).splitlines()[0], EXIT_CLUSTER)
        return
    node = demo.DemoNode.of(real_node)
    try:
        asyncio.run(demo.serve(cp, node, real_node, once=once, output=output, echo=click.echo, say=say))
    finally:
        if real_node is not None:
            left = real_node.stop()
            if left:
                say(f"the real node left host changes behind: {left}")
        cp.stop()
        say("stopped; nothing left running")


@main.command()
def manifests() -> None:
    """Print the install manifests (namespace, CRD, operator with cert-manager certificates).

    The same documents as deploy/manifests/, rendered from the Helm chart; apply them with
    ``evictwatch manifests | kubectl apply -f -`` after creating the record-key Secret (see
    deploy/README.md).
    """
    from importlib.resources import files

    click.echo(files("evictwatch").joinpath("data/install.yaml").read_text(), nl=False)


main.add_command(report_command, "report")
main.add_command(dashboard_command, "dashboard")


@main.command("control-plane")
@click.option("--with-controller-manager/--without-controller-manager", default=True)
@click.option("--kubeconfig-out", type=click.Path(dir_okay=False), help="Also copy the kubeconfig here.")
def control_plane(with_controller_manager: bool, kubeconfig_out: str | None) -> None:
    """Start the local control plane (built on first use) and keep it until Ctrl-C."""
    from .testing.binaries import BinariesError
    from .testing.controlplane import ControlPlane, ControlPlaneError

    try:
        cp = ControlPlane(with_controller_manager=with_controller_manager).start()
    except (BinariesError, ControlPlaneError) as error:
        _fail(str(error), EXIT_CLUSTER)
        return
    try:
        if kubeconfig_out:
            Path(kubeconfig_out).write_text(cp.kubeconfig_path.read_text())
        click.echo(f"kube-apiserver {cp.version()['gitVersion']} at {cp.url}")
        click.echo(f"export KUBECONFIG={kubeconfig_out or cp.kubeconfig_path}")
        with contextlib.suppress(KeyboardInterrupt):
            signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
            signal.pause()
    finally:
        cp.stop()


if __name__ == "__main__":
    main()
