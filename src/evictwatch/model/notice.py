"""What every sink and user handler receives: one settled eviction, flattened from its record."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .types import Outcome, Source, outcome_of
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


def _enum(kind: type[Any], value: object, default: Any) -> Any:
    try:
        return kind(value)
    except ValueError:
        return default


def notice_from_record(record: Mapping[str, Any]) -> Eviction:
    """Flatten a PodEviction (as a plain dict) into an :class:`Eviction`."""
    metadata = record.get("metadata") or {}
    spec = record.get("spec") or {}
    status = record.get("status") or {}
    pod = spec.get("pod") or {}
    requester = spec.get("requester") or {}
    owners = status.get("owners") or []
    top = owners[-1] if owners else pod.get("owner") or {}
    account = requester.get("serviceAccount") or {}
    why = status.get("why") or {}
    why_text = " ".join(
        part for part in (why.get("component"), why.get("reason"), why.get("message")) if part
    )
    if not why_text and spec.get("reason") and not describes_the_door(str(spec.get("reason"))):
        why_text = f"{spec.get('reason')}: {spec.get('message', '')}".strip(": ")
    return Eviction(
        namespace=str(metadata.get("namespace", "")),
        pod=str(pod.get("name", "")),
        record=str(metadata.get("name", "")),
        record_uid=str(metadata.get("uid", "")),
        outcome=outcome_of(status.get("outcome")),
        source=_enum(Source, spec.get("source"), Source.EVICTION_API),
        pod_uid=str(pod.get("uid", "")),
        node=str(pod.get("nodeName", "")),
        labels=dict(pod.get("labels") or {}),
        owner_kind=str(top.get("kind", "")),
        owner_name=str(top.get("name", "")),
        requester=str(requester.get("username", "")),
        component=str(requester.get("component", "")),
        service_account=f"{account['namespace']}/{account['name']}" if account.get("name") else "",
        attempts=int(spec.get("attempts") or 0),
        first_attempt=str(spec.get("firstAttemptTime", "")),
        last_attempt=str(spec.get("lastAttemptTime", "")),
        outcome_time=str(status.get("outcomeTime", "")),
        outcome_reason=str(status.get("outcomeReason", "")),
        why=why_text,
        disruption_budgets=tuple(str(b.get("name", "")) for b in status.get("disruptionBudgets") or []),
        sources=tuple(str(s) for s in spec.get("sources") or []),
        owner_uid=str(top.get("uid", "")),
    )
