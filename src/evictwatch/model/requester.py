"""Recognise the evicting component from the identity the API server reports.

The review never says "this is cluster-autoscaler"; it says who authenticated and, when the
Eviction carried deleteOptions, which field manager (the client's user agent) wrote it. The
names below are the ones each project's own manifests and code use by default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .types import Component, Requester, ServiceAccountRef

_SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
_POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"

# Substrings of a service-account name, a username or a field manager, checked in order.
_HINTS: tuple[tuple[str, Component], ...] = (
    ("cluster-autoscaler", Component.CLUSTER_AUTOSCALER),
    ("karpenter", Component.KARPENTER),
    ("descheduler", Component.DESCHEDULER),
    ("kube-controller-manager", Component.KUBE_CONTROLLER_MANAGER),
    ("kubectl", Component.KUBECTL),
)
# kube-controller-manager's own controllers run as service accounts in kube-system
# (with --use-service-account-credentials) named after the controller.
_KCM_SERVICE_ACCOUNTS = frozenset(
    {
        "node-controller",
        "pod-garbage-collector",
        "disruption-controller",
        "generic-garbage-collector",
        "replicaset-controller",
        "statefulset-controller",
        "job-controller",
        "daemon-set-controller",
    }
)


def parse_service_account(username: str) -> ServiceAccountRef | None:
    """``system:serviceaccount:NS:NAME`` as a reference; anything else is not a service account."""
    if not username.startswith(_SERVICE_ACCOUNT_PREFIX):
        return None
    namespace, sep, name = username[len(_SERVICE_ACCOUNT_PREFIX) :].partition(":")
    if not sep or not namespace or not name or ":" in name:
        return None
    return ServiceAccountRef(namespace=namespace, name=name)


def recognise_component(username: str, field_manager: str = "") -> Component:
    """The evicting program, or ``unknown`` when nothing in the identity names one."""
    account = parse_service_account(username)
    if account is not None and account.namespace == "kube-system" and account.name in _KCM_SERVICE_ACCOUNTS:
        return Component.KUBE_CONTROLLER_MANAGER
    candidates = [account.name if account else username, field_manager]
    for text in candidates:
        lowered = text.lower()
        for hint, component in _HINTS:
            if hint in lowered:
                return component
    return Component.UNKNOWN


def build_requester(
    username: str,
    uid: str = "",
    groups: Sequence[str] = (),
    extra: Mapping[str, Sequence[str]] | None = None,
    field_manager: str = "",
) -> Requester:
    """A :class:`Requester` with the service account and component worked out."""
    pod_names = (extra or {}).get(_POD_NAME_EXTRA) or ()
    return Requester(
        username=username,
        uid=uid,
        groups=tuple(groups),
        service_account=parse_service_account(username),
        field_manager=field_manager,
        component=recognise_component(username, field_manager),
        pod_name=pod_names[0] if pod_names else "",
    )
