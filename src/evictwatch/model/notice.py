"""What every sink and user handler receives: one settled eviction, flattened from its record."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .podeviction import PodEviction
from .types import Outcome, Requester, Source
from .why import describes_the_door


@dataclass(frozen=True)
class Eviction:
    """A settled eviction. ``evictwatch.on_eviction`` handlers get one of these."""

    namespace: str
    pod: str
    record: str
    record_uid: str
    outcome: Outcome
    source: Source
    pod_uid: str = ""
    node: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    owner_kind: str = ""
    owner_name: str = ""
    requester: str = ""
    component: str = ""
    service_account: str = ""
    attempts: int = 0
    first_attempt: str = ""
    last_attempt: str = ""
    outcome_time: str = ""
    outcome_reason: str = ""
    why: str = ""
    disruption_budgets: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    owner_uid: str = ""
    """The top owner's uid (from ``status.owners``): Events about it must carry it to be seen."""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.pod}"

    @property
    def idempotency_key(self) -> str:
        """Stable per record and outcome: a receiver that saw it already can drop a repeat."""
        return f"{self.record_uid}:{self.outcome}"

    @property
    def owner(self) -> str:
        return f"{self.owner_kind}/{self.owner_name}" if self.owner_name else ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = str(self.outcome)
        data["source"] = str(self.source)
        data["labels"] = dict(self.labels)
        data["disruption_budgets"] = list(self.disruption_budgets)
        data["sources"] = list(self.sources)
        return data


def notice_from_record(record: Mapping[str, Any]) -> Eviction:
    """Flatten a PodEviction (as a plain dict) into an :class:`Eviction`."""
    return notice_from_podeviction(PodEviction.from_json(record))


def notice_from_podeviction(record: PodEviction) -> Eviction:
    """Flatten a decoded record into an :class:`Eviction`."""
    spec, status = record.spec, record.status
    requester = spec.requester or Requester(username="")
    account = requester.service_account
    top = record.top_owner
    why_text = status.why.text if status.why is not None else ""
    if not why_text and spec.reason and not describes_the_door(spec.reason):
        why_text = f"{spec.reason}: {spec.message}".strip(": ")
    return Eviction(
        namespace=record.metadata.namespace,
        pod=spec.pod.name,
        record=record.metadata.name,
        record_uid=record.metadata.uid,
        outcome=status.outcome,
        source=spec.source,
        pod_uid=spec.pod.uid,
        node=spec.pod.node_name,
        labels=dict(spec.pod.labels),
        owner_kind=top.kind if top is not None else "",
        owner_name=top.name if top is not None else "",
        requester=requester.username,
        component=str(requester.component) if spec.requester is not None else "",
        service_account=f"{account.namespace}/{account.name}" if account is not None else "",
        attempts=spec.attempts,
        first_attempt=spec.first_attempt_time,
        last_attempt=spec.last_attempt_time,
        outcome_time=status.outcome_time,
        outcome_reason=status.outcome_reason,
        why=why_text,
        disruption_budgets=tuple(b.name for b in status.disruption_budgets),
        sources=spec.sources,
        owner_uid=top.uid if top is not None else "",
    )
