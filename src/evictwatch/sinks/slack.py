"""Slack incoming webhook: a readable message with who, what, where, why and the outcome."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from ..model.notice import Eviction
from ..model.types import Outcome
from .http import HttpSink

_ICON = {
    Outcome.EVICTED: ":recycle:",
    Outcome.BLOCKED: ":no_entry:",
    Outcome.POD_GONE: ":ghost:",
    Outcome.EVICTED_BY_KUBELET: ":boom:",
    Outcome.FAILED: ":boom:",
    Outcome.PENDING: ":hourglass:",
}


def _escape(text: str) -> str:
    """Slack's mrkdwn needs &, < and > escaped; user-controlled names go through here."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(eviction: Eviction) -> dict[str, Any]:
    title = f"{_ICON.get(eviction.outcome, '')} Pod {eviction.key} {str(eviction.outcome).lower()}"
    fields = [
        ("Owner", eviction.owner or "-"),
        ("Node", eviction.node or "-"),
        ("Requester", f"{eviction.requester or '-'} ({eviction.component or 'unknown'})"),
        ("Source", str(eviction.source)),
        ("Attempts", str(eviction.attempts)),
        ("Outcome", f"{eviction.outcome}: {eviction.outcome_reason}".rstrip(": ")),
    ]
    if eviction.why:
        fields.append(("Why", eviction.why))
    text = _escape(title) + "\n" + "\n".join(f"*{name}:* {_escape(value)}" for name, value in fields)
    return {
        "text": _escape(title),
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
    }


@dataclass
class SlackSink(HttpSink):
    deduplicates: ClassVar[bool] = False
    """A channel shows every message it gets: an interrupted send is not repeated."""
    marks_in_flight: ClassVar[bool] = True
    """Written as ``Sending`` before it leaves, so a crash mid-send is known (controller/inflight.py)."""

    def body(self, eviction: Eviction) -> tuple[bytes, str]:
        return json.dumps(slack_message(eviction)).encode(), "application/json"
