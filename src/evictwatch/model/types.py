"""Plain values that every layer shares: what an eviction is, who asked, what came of it.

No I/O here and no Kubernetes client types: these are built from wire data by the decoders
in this package and turned into records by the ``records`` layer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Source(enum.StrEnum):
    """Which door the eviction came through."""

    EVICTION_API = "EvictionAPI"
    KUBELET = "Kubelet"
    PREEMPTION = "Preemption"
    TAINT_MANAGER = "TaintManager"
    POD_GC = "PodGC"
    DEVICE_TAINT_MANAGER = "DeviceTaintManager"
    """kube-controller-manager's device-taint eviction controller (DRA, a NoExecute device taint)."""
    EVICTION_REQUEST = "EvictionRequest"
    """An EvictionRequest (``lifecycle.k8s.io``, KEP-4563) names the Pod: asked for, not yet done."""
    OTHER = "Other"
    """A DisruptionTarget reason nobody here knows yet (a newer release's door): kept verbatim."""


class Outcome(enum.StrEnum):
    """What came of the eviction; ``Pending`` until the controller settles it."""

    PENDING = "Pending"
    EVICTED = "Evicted"
    BLOCKED = "Blocked"
    POD_GONE = "PodGone"
    EVICTED_BY_KUBELET = "EvictedByKubelet"
    """The kubelet evicted the Pod under node pressure (the Pod's phase became ``Failed``)."""
    FAILED = "Failed"
    """The old name of ``EvictedByKubelet``: it read as "the eviction failed". Records settled
    before the rename still carry it; :func:`outcome_of` reads them as ``EvictedByKubelet``."""


LEGACY_OUTCOMES = {"Failed": Outcome.EVICTED_BY_KUBELET}


def outcome_of(value: object) -> Outcome:
    """A stored ``status.outcome`` as an Outcome: legacy names mapped, anything unknown Pending."""
    text = str(value) if value else ""
    if text in LEGACY_OUTCOMES:
        return LEGACY_OUTCOMES[text]
    try:
        return Outcome(text)
    except ValueError:
        return Outcome.PENDING


class Component(enum.StrEnum):
    """The evicting program, recognised from the requester's identity and field manager."""

    KUBECTL = "kubectl"
    CLUSTER_AUTOSCALER = "cluster-autoscaler"
    KARPENTER = "karpenter"
    DESCHEDULER = "descheduler"
    KUBE_CONTROLLER_MANAGER = "kube-controller-manager"
    KUBELET = "kubelet"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ServiceAccountRef:
    namespace: str
    name: str


@dataclass(frozen=True)
class Requester:
    """Who asked for the eviction, as the API server authenticated them."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    service_account: ServiceAccountRef | None = None
    field_manager: str = ""
    component: Component = Component.UNKNOWN
    pod_name: str = ""
    """For a Pod-bound service-account token: the Pod that made the request."""


@dataclass(frozen=True)
class DeleteOptions:
    """The parts of the Eviction's deleteOptions that tell how the Pod was to go."""

    grace_period_seconds: int | None = None
    precondition_uid: str | None = None
    precondition_resource_version: str | None = None
    dry_run: tuple[str, ...] = ()
    propagation_policy: str | None = None

    def is_empty(self) -> bool:
        return self == DeleteOptions()


@dataclass(frozen=True)
class EvictionAttempt:
    """One call of the Eviction API, decoded from an AdmissionReview (v1 or v1beta1)."""

    namespace: str
    pod_name: str
    requester: Requester
    delete_options: DeleteOptions = field(default_factory=DeleteOptions)
    dry_run: bool = False
    policy_version: str = "policy/v1"
    """The Eviction's apiVersion as the webhook received it (the server may have converted it)."""
    review_uid: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.pod_name}"
