"""``evictwatch watch`` and ``get -w``: records as they are made and as they settle.

The stream is the operator's own list-then-watch (:class:`~evictwatch.kube.listwatch.ListWatch`),
driven here with a give-up: the operator's watches must outlive any outage, a user's terminal
must not. The first list failing is reported at once, with the same line ``get`` gives; a
stream that breaks later is resumed five times (about 15 s in all), then reported.
"""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import click
from lightkube.config.kubeconfig import SingleConfig

from .. import views
from ..kube.api import JsonApi
from ..kube.client import status_code
from ..kube.listwatch import Gone, ListWatch
from ..model.podeviction import record_path
from .connect import is_api_failure

RESUMES = 5
TIME_COLUMN = "TIME"
_MIN_WIDTHS = {"TIME": 20, "NAMESPACE": 12, "POD": 30, "NODE": 14, "SOURCE": 11, "REQUESTER": 20}


@dataclass
class StreamTable:
    """Aligned columns for rows that arrive one at a time: a column only ever widens."""

    headers: tuple[str, ...]
    show_headers: bool = True
    widths: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.widths = [max(len(h), _MIN_WIDTHS.get(h, 0)) for h in self.headers]

    def line(self, cells: list[str]) -> str:
        self.widths = [max(w, len(c)) for w, c in zip(self.widths, cells, strict=True)]
        return "   ".join(c.ljust(w) for c, w in zip(cells, self.widths, strict=True)).rstrip()

    def header(self) -> str:
        return self.line(list(self.headers))


@dataclass
class Printer:
    """Prints a record when its outcome or attempt count changes (the story moving on)."""

    output: str
    keep: Callable[[Mapping[str, Any]], bool]
    show_headers: bool = True
    seen: dict[str, tuple[str, int]] = field(default_factory=dict)
    table: StreamTable | None = None

    def __post_init__(self) -> None:
        if self.output in ("table", "wide"):
            wide = views.WIDE if self.output == "wide" else ()
            self.table = StreamTable((TIME_COLUMN, *views.COLUMNS, *wide))

    def start(self) -> None:
        """The header, once the first list came back (an error line stands alone)."""
        if self.table is not None and self.show_headers:
            click.echo(self.table.header())
            self.show_headers = False

    def remember(self, record: Mapping[str, Any]) -> None:
        """Already shown (by ``get`` before ``-w``): print it again only when it changes."""
        self.seen[str((record.get("metadata") or {}).get("uid", ""))] = self._state(record)

    @staticmethod
    def _state(record: Mapping[str, Any]) -> tuple[str, int]:
        return views.outcome_text(record), int((record.get("spec") or {}).get("attempts") or 0)

    async def __call__(self, kind: str, record: dict[str, Any]) -> None:
        if kind == "DELETED" or not self.keep(record):
            return
        uid = str((record.get("metadata") or {}).get("uid", ""))
        state = self._state(record)
        if self.seen.get(uid) == state:
            return
        self.seen[uid] = state
        self.start()
        now = datetime.datetime.now(datetime.UTC)
        if self.output == "json":
            click.echo(json.dumps(views.without_managed_fields(record), separators=(",", ":")))
        elif self.output == "name":
            click.echo(views.resource_name(record))
        else:
            assert self.table is not None
            cells = views.row(record, now, self.output == "wide")
            click.echo(self.table.line([now.strftime("%Y-%m-%dT%H:%M:%SZ"), *cells]))


async def stream(connection: SingleConfig, namespace: str | None, printer: Printer) -> None:
    """List, then watch; give up after RESUMES failed resumptions in a row."""
    api = JsonApi(connection)
    try:
        await _follow(ListWatch(api, record_path(namespace or ""), printer, "cli-watch"), printer)
    finally:
        await api.close()


async def _follow(lw: ListWatch, printer: Printer) -> None:
    lw.resource_version = await lw.list_once()
    printer.start()
    failures = 0
    while True:
        try:
            await lw.watch_once(lw.resource_version)
            failures = 0
        except Gone:
            lw.resource_version = await lw.list_once()
        except Exception as error:
            if not is_api_failure(error) or status_code(error) in (401, 403, 404):
                raise  # a bug, or an answer that waiting will not change
            failures += 1
            if failures > RESUMES:
                raise
            await asyncio.sleep(min(0.5 * 2**failures, 4.0))


async def stream_for(
    connection: SingleConfig, namespace: str | None, printer: Printer, timeout: float | None
) -> None:
    """:func:`stream` until ``timeout`` seconds have passed (None: until Ctrl-C)."""
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            await stream(connection, namespace, printer)
    except TimeoutError:
        if not deadline.expired():
            raise  # an API call timed out, not our deadline
