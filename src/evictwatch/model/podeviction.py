"""The PodEviction record as one typed value: decoded from, and encoded to, the API's JSON.

Every reader (the controller, the sinks' notice, the report, the CLI) decodes a record here,
so there is one set of defaults: a record written by a watcher has 0 attempts, a record the
controller has not settled is ``Pending``, an absent requester is ``None``. Decoding never
raises: a field of the wrong type reads as absent (records may be written by anyone with RBAC,
and a report must still render). :meth:`PodEviction.to_json` writes what was read, leaving
out what is empty, in the shape the CRD (records/crd.py) describes.

The API's names for the resource, and the one function that builds a record's path
(:func:`record_path`, namespace and name percent-quoted), live here too.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from .hooks import HookProgress
from .outcome import parse_time
from .record import OwnerRef, PodInfo
from .types import DeleteOptions, Outcome, Requester, Source

GROUP = "evictwatch.io"
VERSION = "v1alpha1"
KIND = "PodEviction"
PLURAL = "podevictions"
API_VERSION = f"{GROUP}/{VERSION}"


def record_path(namespace: str, name: str = "") -> str:
    """The API path of the records in ``namespace`` (every namespace when it is empty), or of the
    record ``name`` in it.

    Both are quoted: a Pod name reaches us before the API server validates it.
    """
    if not namespace:
        return f"/apis/{GROUP}/{VERSION}/{PLURAL}"
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace, safe='')}/{PLURAL}"
    return f"{base}/{quote(name, safe='')}" if name else base


# ---- the parts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pressure:
    """What the kubelet said it was short of (``spec.pressure``)."""

    resource: str = ""
    usage: str = ""
    message: str = ""


@dataclass(frozen=True)
class Why:
    """The evicting component's own explanation, copied from its Event (``status.why``)."""

    component: str = ""
    reason: str = ""
    message: str = ""
    event_time: str = ""

    @property
    def text(self) -> str:
        return " ".join(part for part in (self.component, self.reason, self.message) if part)


@dataclass(frozen=True)
class NodeFacts:
    name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    unschedulable: bool | None = None


@dataclass(frozen=True)
class Budget:
    """A PodDisruptionBudget over the Pod, as the controller found it (``status.disruptionBudgets``)."""

    name: str
    disruptions_allowed: int | None = None
    current_healthy: int | None = None
    desired_healthy: int | None = None
    expected_pods: int | None = None

    @property
    def never_allows(self) -> bool:
        """Whether no eviction can ever pass: as many healthy Pods required as there are Pods.

        That is ``minAvailable`` at or above the Pods it selects, or ``maxUnavailable: 0``.
        """
        expected, desired = self.expected_pods, self.desired_healthy
        return expected is not None and expected > 0 and desired is not None and desired >= expected


@dataclass(frozen=True)
class Delivery:
    state: str = ""
    attempts: int = 0
    last_error: str = ""
    time: str = ""
    outcome: str = ""


@dataclass(frozen=True)
class Hold:
    """How the webhook held the eviction for its pre-eviction hooks (``spec.hold``)."""

    since: str = ""
    held_attempts: int = 0
    released: str = ""
    """``HooksDone`` or ``TimedOut`` once an attempt was let through; empty while held."""
    released_time: str = ""


@dataclass(frozen=True)
class Spec:
    """The facts of the attempts (written by the webhook and the watchers)."""

    pod: PodInfo
    source: Source = Source.EVICTION_API
    sources: tuple[str, ...] = ()
    requester: Requester | None = None
    requesters: tuple[Requester, ...] = ()
    """Every distinct requester in order; the first is :attr:`requester`, who came first."""
    policy_version: str = ""
    delete_options: DeleteOptions = field(default_factory=DeleteOptions)
    attempts: int = 0
    first_attempt_time: str = ""
    last_attempt_time: str = ""
    reason: str = ""
    message: str = ""
    pressure: Pressure | None = None
    missing_pods: tuple[str, ...] = ()
    """For the one record of a requester's evictions of Pods that did not exist: their names."""
    hooks: tuple[str, ...] = ()
    """The pre-eviction hooks the eviction waits for, in the order they run."""
    unknown_hooks: tuple[str, ...] = ()
    hold: Hold | None = None


@dataclass(frozen=True)
class Status:
    """What came of it (written by the controller)."""

    outcome: Outcome = Outcome.PENDING
    outcome_time: str = ""
    outcome_reason: str = ""
    why: Why | None = None
    owners: tuple[OwnerRef, ...] = ()
    node: NodeFacts | None = None
    disruption_budgets: tuple[Budget, ...] = ()
    deliveries: Mapping[str, Delivery] = field(default_factory=dict)
    observed_attempts: int | None = None
    observed_generation: int | None = None
    hooks: tuple[HookProgress, ...] = ()
    """Each pre-eviction hook's progress, written by the leader's hook runner."""
    unknown_hooks: tuple[str, ...] = ()
    """Unknown hook names already reported in an Event."""


@dataclass(frozen=True)
class Metadata:
    name: str = ""
    namespace: str = ""
    uid: str = ""
    resource_version: str = ""
    creation_timestamp: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


# ---- the record ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodEviction:
    """One record: ``PodEviction.from_json(obj)`` to read, ``.to_json()`` to write."""

    metadata: Metadata
    spec: Spec
    status: Status = field(default_factory=Status)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> PodEviction:
        """The record in ``obj`` (as the API returns it); never raises, see the module's docstring."""
        from .podeviction_json import decode  # the codec's module imports these types

        return decode(obj)

    def to_json(self) -> dict[str, Any]:
        """The record as the API takes it (what is empty is left out; ``attempts`` always given)."""
        from .podeviction_json import encode

        return encode(self)

    @property
    def path(self) -> str:
        return record_path(self.metadata.namespace, self.metadata.name)

    @property
    def pod_name(self) -> str:
        """The Pod's name (the record's own name if the spec lost it)."""
        return self.spec.pod.name or self.metadata.name

    @property
    def node_name(self) -> str:
        """The node the Pod was on: ``spec.pod.nodeName``, else the controller's ``status.node.name``."""
        return self.spec.pod.node_name or (self.status.node.name if self.status.node is not None else "")

    @property
    def top_owner(self) -> OwnerRef | None:
        """The controller at the end of the owner chain, else the Pod's own owner."""
        return self.status.owners[-1] if self.status.owners else self.spec.pod.owner

    @property
    def all_sources(self) -> tuple[str, ...]:
        """Every door it was seen through (the first one when no list was written)."""
        return self.spec.sources or (str(self.spec.source),)

    @property
    def first_attempt(self) -> datetime.datetime | None:
        """The first attempt, else the last, else the record's creation (a watcher's record)."""
        return (
            parse_time(self.spec.first_attempt_time)
            or parse_time(self.spec.last_attempt_time)
            or parse_time(self.metadata.creation_timestamp)
            or self.outcome_at
        )

    @property
    def last_attempt(self) -> datetime.datetime | None:
        return parse_time(self.spec.last_attempt_time) or self.first_attempt

    @property
    def outcome_at(self) -> datetime.datetime | None:
        return parse_time(self.status.outcome_time)

    @property
    def held_seconds(self) -> float | None:
        """How long its hooks held the eviction (until now while held); None when never held."""
        hold = self.spec.hold
        since = parse_time(hold.since) if hold is not None else None
        if hold is None or since is None:
            return None
        end = parse_time(hold.released_time) or datetime.datetime.now(datetime.UTC)
        return max((end - since).total_seconds(), 0.0)

    @property
    def last_activity(self) -> datetime.datetime | None:
        """When it last moved: its outcome, else its last attempt (or creation)."""
        return self.outcome_at or self.last_attempt
