"""Label selectors evaluated on a Pod's labels, the way the API server evaluates them.

The webhook has to do this itself: ``objectSelector`` on a ``pods/eviction`` rule is matched
against the Eviction object, which never has labels, so it can't select Pods.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """True when ``labels`` satisfy every matchLabels entry and matchExpressions term.

    An absent or empty selector matches everything, as in Kubernetes.
    """
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    return all(_expression_matches(expr, labels) for expr in selector.get("matchExpressions") or [])


def _expression_matches(expr: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key = expr.get("key", "")
    operator = expr.get("operator")
    values: Iterable[str] = expr.get("values") or []
    if operator == "In":
        return key in labels and labels[key] in values
    if operator == "NotIn":
        return key not in labels or labels[key] not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    return False


def is_subset(required: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """True when every required label is present with its value (and ``required`` is not empty)."""
    return bool(required) and all(labels.get(key) == value for key, value in required.items())
