"""Making a DisruptionTarget reason nobody here knows yet show up, the day its door opens.

The watchers record such a Pod like any other disruption (source ``Other``, the reason and
message verbatim). This module adds what makes it visible to whoever runs evictwatch: one
warning that names the reason and a counter by reason. The reason is written by whichever
client may patch Pod status, so the counter keeps at most :data:`MAX_REASON_LABELS` distinct
values (the rest share one label) and never lets a careless writer blow up the series.
"""

from __future__ import annotations

import logging

from .. import telemetry
from ..model.record import Sighting

log = logging.getLogger("evictwatch.watchers")

MAX_REASON_LABELS = 32
OVERFLOW_LABEL = "(more reasons)"
_MAX_LABEL_LENGTH = 128
_labelled: set[str] = set()


def reason_label(reason: str) -> str:
    """The metric label for ``reason``: itself (cut to 128 characters) until the limit is reached."""
    label = reason[:_MAX_LABEL_LENGTH] or "(empty)"
    if label in _labelled:
        return label
    if len(_labelled) >= MAX_REASON_LABELS:
        return OVERFLOW_LABEL
    _labelled.add(label)
    return label


def note_unknown_reason(sighting: Sighting, record: str) -> None:
    """Count and log one Pod recorded with an unknown DisruptionTarget reason."""
    pod = sighting.pod
    telemetry.UNKNOWN_DISRUPTION_REASONS.labels(reason_label(sighting.reason)).inc()
    log.warning(
        "%s/%s has a DisruptionTarget reason evictwatch does not know: %r (%s); recorded with source Other",
        pod.namespace,
        pod.name,
        sighting.reason,
        sighting.message,
        extra={"namespace": pod.namespace, "pod": pod.name, "reason": sighting.reason, "record": record},
    )
