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


def parse_selector(text: str) -> dict[str, Any]:
    """kubectl's ``-l`` syntax as a selector :func:`matches` evaluates.

    ``app=web``, ``app==web``, ``tier!=db``, ``env in (a,b)``, ``env notin (c)``, ``gpu`` and
    ``!gpu``, joined by commas. ValueError names the term it cannot read.
    """
    match_labels: dict[str, str] = {}
    expressions: list[dict[str, Any]] = []
    for term in _terms(text):
        expressions_or_label = _term(term)
        if isinstance(expressions_or_label, tuple):
            match_labels[expressions_or_label[0]] = expressions_or_label[1]
        else:
            expressions.append(expressions_or_label)
    return {"matchLabels": match_labels, "matchExpressions": expressions}


def _terms(text: str) -> list[str]:
    """Split on the commas that are not inside ``( )``."""
    terms, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += char
    terms.append(current.strip())
    if depth != 0 or any(not term for term in terms):
        raise ValueError(f"{text!r} is not a label selector (like app=web,tier!=db or 'env in (a,b)')")
    return terms


def _term(term: str) -> tuple[str, str] | dict[str, Any]:
    words = term.split(None, 1)
    if len(words) == 2 and words[1].split("(", 1)[0].strip() in ("in", "notin"):
        operator, _, rest = words[1].partition("(")
        if not rest.endswith(")"):
            raise ValueError(f"{term!r}: a set needs parentheses, like 'env in (a,b)'")
        values = [v.strip() for v in rest[:-1].split(",") if v.strip()]
        return {"key": words[0], "operator": "In" if operator.strip() == "in" else "NotIn", "values": values}
    if "!=" in term:
        key, _, value = term.partition("!=")
        return {"key": key.strip(), "operator": "NotIn", "values": [value.strip()]}
    if "=" in term:
        key, _, value = term.replace("==", "=", 1).partition("=")
        return key.strip(), value.strip()
    if term.startswith("!"):
        return {"key": term[1:].strip(), "operator": "DoesNotExist"}
    if " " in term:
        raise ValueError(f"{term!r} is not a label selector term")
    return {"key": term, "operator": "Exists"}
