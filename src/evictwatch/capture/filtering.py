"""Which Pods to capture: the configured namespaces and Pod selector, minus our own Pods."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Filter, SelfIdentity
from ..model.record import PodInfo
from ..model.selector import is_subset, matches


@dataclass(frozen=True)
class Decision:
    capture: bool
    reason: str = ""


class CaptureFilter:
    """Two stages: the namespace (before the Pod is looked up, free) and then the Pod."""

    def __init__(self, rules: Filter, own: SelfIdentity) -> None:
        self.rules = rules
        self.own = own

    def namespace(self, namespace: str) -> Decision:
        if self.rules.namespaces and namespace not in self.rules.namespaces:
            return Decision(False, f"namespace {namespace} is not in capture.namespaces")
        if namespace in self.rules.excludeNamespaces:
            return Decision(False, f"namespace {namespace} is in capture.excludeNamespaces")
        return Decision(True)

    def pod(self, pod: PodInfo) -> Decision:
        if pod.namespace == self.own.namespace and is_subset(self.own.labels, pod.labels):
            return Decision(False, "the Pod is one of evictwatch's own")
        selector = self.rules.podSelector
        if selector is not None and pod.exists and not matches(selector.model_dump(), pod.labels):
            return Decision(False, "the Pod's labels do not match capture.podSelector")
        return Decision(True)
