"""The time window of a report and the times a record is placed by (pure; no I/O).

A record belongs to a window when its activity, from its first attempt to its outcome (or
last attempt, while it has none), overlaps the window. So a drain that kept retrying
across the window's start is in, and so is an eviction settled inside it.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

UTC = datetime.UTC

_DURATION = re.compile(r"(\d+)\s*(w|d|h|m|s)")
_UNIT_SECONDS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}


class WindowError(ValueError):
    """A window that cannot be understood; the message says what was expected."""


@dataclass(frozen=True)
class Window:
    """``[start, end]``, both aware datetimes in UTC."""

    start: datetime.datetime
    end: datetime.datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise WindowError("window times must carry a time zone")
        if self.end <= self.start:
            raise WindowError(f"the window ends ({format_time(self.end)}) before it starts")

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    @classmethod
    def last(cls, since: str, now: datetime.datetime | None = None) -> Window:
        """The window of the last ``since`` (``12h``, ``90m``, ``2d``, ``1h30m``) up to ``now``."""
        end = now or datetime.datetime.now(UTC)
        return cls(end - datetime.timedelta(seconds=parse_duration(since)), end)

    def contains(self, moment: datetime.datetime) -> bool:
        return self.start <= moment <= self.end

    def overlaps(self, first: datetime.datetime, last: datetime.datetime) -> bool:
        return first <= self.end and last >= self.start


def parse_duration(text: str) -> float:
    """Seconds in ``12h``, ``90m``, ``1h30m``, ``2d``, ``1w``; a positive amount is required."""
    compact = text.strip().lower()
    position = 0
    total = 0
    for match in _DURATION.finditer(compact):
        if compact[position : match.start()].strip():
            break
        total += int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if not compact or compact[position:].strip() or total <= 0:
        raise WindowError(f"not a duration: {text!r} (expected e.g. 12h, 90m, 1h30m, 2d)")
    return float(total)


def parse_time(text: str) -> datetime.datetime:
    """An RFC 3339 time (``2026-01-02T03:04:05Z``, with fraction or offset) as an aware UTC datetime."""
    value = text.strip()
    try:
        moment = datetime.datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise WindowError(f"not an RFC 3339 time: {text!r} (expected e.g. 2026-01-02T15:04:05Z)") from None
    if moment.tzinfo is None:
        raise WindowError(f"RFC 3339 time without a zone: {text!r} (add Z or an offset like +02:00)")
    return moment.astimezone(UTC)


def format_time(moment: datetime.datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_time(value)
    except WindowError:
        return None


def _section(record: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = record.get(key)
    return value if isinstance(value, Mapping) else {}


def record_times(
    record: Mapping[str, Any],
) -> tuple[datetime.datetime | None, datetime.datetime | None, datetime.datetime | None]:
    """``(first attempt, last attempt, outcome time)``; each None when absent or unreadable.

    A record without attempt times (a watcher saw the Pod go) falls back to its creation time.
    """
    spec = _section(record, "spec")
    status = _section(record, "status")
    created = _time(_section(record, "metadata").get("creationTimestamp"))
    first = _time(spec.get("firstAttemptTime"))
    last = _time(spec.get("lastAttemptTime"))
    outcome = _time(status.get("outcomeTime"))
    first = first or last or created or outcome
    last = last or first
    return first, last, outcome


def record_time(record: Mapping[str, Any]) -> datetime.datetime | None:
    """When the record happened, for placing it: the outcome time, else the last attempt."""
    first, last, outcome = record_times(record)
    return outcome or last or first


def in_window(record: Mapping[str, Any], window: Window) -> bool:
    first, last, outcome = record_times(record)
    if first is None or last is None:
        return False
    end = max(last, outcome) if outcome is not None else last
    return window.overlaps(min(first, end), end)
