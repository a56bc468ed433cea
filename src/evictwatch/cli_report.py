"""``evictwatch report``: the records of a window as one HTML page (or a PNG or PDF of it).

The command's options and exit codes live here, beside the CLI (only the CLI imports click);
the report itself is :mod:`evictwatch.report`.
"""

from __future__ import annotations

import asyncio
import datetime
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from .kube.client import CALL_ERRORS, KubeConfigError, cluster_config
from .report.browser import BrowserError, BrowserNotFound, find_chromium, pdf_html, screenshot_html
from .report.collect import collect
from .report.render import render
from .report.window import UTC, Window, WindowError, parse_time

EXIT_USAGE = 2
EXIT_CLUSTER = 3
EXIT_BROWSER = 4
PNG_LISTED = 100
"""Records listed in a PNG (the timeline and tables still cover all); the HTML lists every one."""


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def window_from_options(
    since: str | None, start: str | None, end: str | None, now: datetime.datetime | None = None
) -> Window:
    """``--since`` alone (default 12h), or ``--from`` with an optional ``--to`` (default now)."""
    moment = now or datetime.datetime.now(UTC)
    if start is None and end is None:
        return Window.last(since or "12h", moment)
    if since is not None:
        raise WindowError("give either --since or --from/--to, not both")
    if start is None:
        raise WindowError("--to needs --from")
    return Window(parse_time(start), parse_time(end) if end is not None else moment)


async def _collect(
    kubeconfig: str | None, window: Window, namespace: str | None, node: str | None
) -> list[dict[str, Any]]:
    return await collect(cluster_config(kubeconfig), window, namespace=namespace, node=node)


def _through_chromium(page: str, output_format: str) -> bytes:
    """The page as a PNG or a PDF, made by headless Chromium from a private temporary file."""
    with tempfile.TemporaryDirectory(prefix="evictwatch-report-") as folder:
        html_path = Path(folder).resolve() / "report.html"
        html_path.write_text(page, encoding="utf-8")
        make = screenshot_html if output_format == "png" else pdf_html
        try:
            return asyncio.run(make(html_path))
        except BrowserNotFound as error:
            _fail(str(error), EXIT_BROWSER)
        except (BrowserError, TimeoutError) as error:
            _fail(f"Chromium could not render the report: {error}", EXIT_BROWSER)


Decorated = TypeVar("Decorated", bound=Callable[..., Any])


def window_options(command: Decorated) -> Decorated:
    """``--since``, ``--from`` and ``--to``: the window a command reads (see window_from_options)."""
    command = click.option("--to", "end", default=None, metavar="RFC3339", help="Window end (default: now).")(
        command
    )
    command = click.option(
        "--from", "start", default=None, metavar="RFC3339", help="Window start, e.g. 2026-01-02T15:04:05Z."
    )(command)
    return click.option(
        "--since", default=None, metavar="DURATION", help="Window up to now: 12h (default), 90m, 2d."
    )(command)


FORMATS = ("html", "png", "pdf")


def output_options(name: str) -> Callable[[Decorated], Decorated]:
    """``-o/--output`` and ``--format html|png|pdf`` for a page written to ``<name>.html`` by default."""

    def decorate(command: Decorated) -> Decorated:
        command = click.option(
            "--format",
            "output_format",
            type=click.Choice(FORMATS),
            default=None,
            help="html (default), png or pdf (both need Chromium); by default from --output's suffix.",
        )(command)
        return click.option(
            "-o",
            "--output",
            type=click.Path(dir_okay=False, writable=True),
            default=None,
            help=f"Where to write (default: {name}.html, or {name}.png/.pdf with --format png/pdf).",
        )(command)

    return decorate


def checked_options(
    name: str,
    since: str | None,
    start: str | None,
    end: str | None,
    output: str | None,
    output_format: str | None,
) -> tuple[Window, Path, str]:
    """The window, the file and its format, or exit: bad options (2), PNG or PDF without Chromium (4)."""
    suffix = Path(output).suffix.lower().lstrip(".") if output is not None else ""
    if output_format is None:
        output_format = suffix if suffix in FORMATS else "html"
    elif suffix in FORMATS and suffix != output_format:
        _fail(
            f"--format {output_format} would write {output_format.upper()} into {output}: drop one",
            EXIT_USAGE,
        )
    try:
        window = window_from_options(since, start, end)
    except WindowError as error:
        _fail(str(error), EXIT_USAGE)
    if output_format != "html" and find_chromium() is None:
        _fail(f"{output_format.upper()} needs Chromium: {BrowserNotFound()}", EXIT_BROWSER)
    return window, Path(output or f"{name}.{output_format}"), output_format


@click.command("report")
@window_options
@click.option("--node", default=None, help="Only Pods that were on this node.")
@click.option("-n", "--namespace", default=None, help="Only this namespace (default: all namespaces).")
@click.option(
    "--kubeconfig", type=click.Path(dir_okay=False), help="Default: $KUBECONFIG, ~/.kube/config, in-cluster."
)
@output_options("report")
def report_command(
    since: str | None,
    start: str | None,
    end: str | None,
    node: str | None,
    namespace: str | None,
    kubeconfig: str | None,
    output: str | None,
    output_format: str | None,
) -> None:
    """Write a drain report: evictions per node over time, per workload, kubelet pressure, records."""
    window, target, output_format = checked_options("report", since, start, end, output, output_format)
    started = time.perf_counter()
    try:
        records = asyncio.run(_collect(kubeconfig, window, namespace, node))
    except KubeConfigError as error:
        _fail(str(error), EXIT_CLUSTER)
        return
    except CALL_ERRORS as error:
        _fail(f"could not list PodEvictions: {type(error).__name__}: {error}", EXIT_CLUSTER)
        return
    generated = datetime.datetime.now(UTC)
    max_listed = PNG_LISTED if output_format == "png" else None
    page = render(records, window, node=node, namespace=namespace, generated=generated, max_listed=max_listed)
    if output_format == "html":
        target.write_text(page, encoding="utf-8")
    else:
        target.write_bytes(_through_chromium(page, output_format))
    elapsed = time.perf_counter() - started
    click.echo(
        f"wrote {target}: {len(records)} records from {window.start:%Y-%m-%d %H:%M} "
        f"to {window.end:%Y-%m-%d %H:%M} UTC in {elapsed:.1f} s"
    )
