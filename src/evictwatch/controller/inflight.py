"""Deliveries marked as in flight before they leave the process, and what a restart makes of them.

A delivery to a receiver outside the cluster (HTTP, Slack) and the status write that records it
cannot be one step: if the operator dies between the two, the record still says Pending and the
next leader sends again. The HTTP sink survives that, since the receiver recognises the repeat
by its ``Idempotency-Key``; a Slack channel cannot, and shows the message twice.

So a delivery to a sink that cannot recognise a repeat (Slack) is first written as ``Sending``
(in the status write that already precedes the deliveries). A leader that finds ``Sending`` for
the current outcome knows a predecessor was interrupted mid-send and cannot know whether the
message arrived; it does not send it again: the delivery becomes ``Interrupted`` and a warning
names it, so a crash costs at most one message that someone can look up, never a silent repeat.
A sink whose receiver deduplicates (HTTP) gets no mark, which would cost a status write per
delivery for nothing: cut off, it is simply sent again with the same key (at least once, seen
once). Were it marked, it would be resent all the same.

Pure functions of the status entries, so they are tested without a cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from ..model.notice import Eviction

log = logging.getLogger("evictwatch.controller")

SENDING = "Sending"
INTERRUPTED = "Interrupted"
FINAL_STATES = ("Delivered", "Failed", "Skipped", INTERRUPTED)
"""Delivery states after which a sink is not called again for the same outcome."""


class MaybeMarked(Protocol):
    name: str


def marks_in_flight(sink: MaybeMarked) -> bool:
    """True for sinks that get a ``Sending`` mark before each delivery (Slack)."""
    return bool(getattr(sink, "marks_in_flight", False))


def deduplicates(sink: MaybeMarked) -> bool:
    """True when the receiver recognises a repeated delivery, so resending is harmless."""
    return bool(getattr(sink, "deduplicates", False))


def sending(previous: Mapping[str, Any], outcome: str, now: str) -> dict[str, Any]:
    """The entry to write before sending: the tries so far are kept, the next one is under way."""
    tries = int(previous.get("attempts") or 0) if previous.get("outcome") == outcome else 0
    entry: dict[str, Any] = {"state": SENDING, "outcome": outcome, "attempts": tries, "time": now}
    if previous.get("outcome") == outcome and previous.get("lastError"):
        entry["lastError"] = previous["lastError"]
    return entry


def after_interruption(entry: Mapping[str, Any], outcome: str, *, resend: bool) -> dict[str, Any] | None:
    """What a ``Sending`` entry left by an interrupted delivery becomes; None to deliver as usual.

    ``None`` also when the entry is not an interrupted send of this outcome (nothing to resolve),
    or when ``resend`` is allowed (the receiver deduplicates): the caller then sends again.
    """
    if entry.get("state") != SENDING or entry.get("outcome") != outcome or resend:
        return None
    return {
        "state": INTERRUPTED,
        "outcome": outcome,
        "attempts": int(entry.get("attempts") or 0) + 1,
        "time": entry.get("time", ""),
        "lastError": (
            "the operator stopped while this delivery was being sent; it may or may not have "
            "arrived, and is not sent again because this sink cannot recognise a repeat"
        ),
    }


def warn_interrupted(sink_name: str, notice: Eviction) -> None:
    log.warning(
        "the delivery of %s to %s was interrupted mid-send by a stop or crash: not sending it again "
        "(this sink cannot recognise a repeat); it is marked Interrupted",
        notice.key,
        sink_name,
        extra={"namespace": notice.namespace, "pod": notice.pod, "sink": sink_name},
    )
