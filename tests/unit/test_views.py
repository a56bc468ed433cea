"""The CLI's views read records through the one codec: its defaults, and never a crash."""

from __future__ import annotations

import datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from evictwatch.views import COLUMNS, WIDE, describe, row, select

NOW = datetime.datetime(2026, 12, 3, 12, 0, 0, tzinfo=datetime.UTC)


def record(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web-1-u1", "namespace": "shop", "creationTimestamp": "2026-12-03T11:58:00Z"},
        "spec": {
            "pod": {"name": "web-1", "uid": "u1", "nodeName": "n1", "labels": {"app": "web"}},
            "source": "EvictionAPI",
            **spec,
        },
        "status": {"outcome": "Failed", "owners": [{"kind": "ReplicaSet", "name": "web-6d4"},
                                                  {"kind": "Deployment", "name": "web"}]},
    }  # fmt: skip


def test_a_row_has_the_codecs_defaults_and_current_names() -> None:
    cells = row(record(), NOW, wide=True)
    assert len(cells) == len(COLUMNS) + len(WIDE)
    # No attempts written (a watcher's record): 0, the codec's default; "Failed" is the old name.
    assert cells[:8] == ["shop", "web-1", "n1", "EvictionAPI", "<unknown>", "EvictedByKubelet", "0", "2m"]
    assert cells[8:] == ["Deployment/web", "unknown", ""]


def test_describe_names_the_delete_options_given_and_the_requesters() -> None:
    text = describe(
        record(
            attempts=2,
            deleteOptions={"gracePeriodSeconds": 30, "propagationPolicy": "Foreground"},
            requester={"username": "alice", "component": "kubectl-drain", "groups": ["ops"]},
            requesters=[{"username": "alice", "component": "kubectl-drain", "groups": ["ops"]},
                        {"username": "bob"}],
        ),
        NOW,
    )  # fmt: skip
    assert "  Options:     gracePeriodSeconds=30, propagationPolicy=Foreground" in text
    assert "  User:        alice" in text and "  Groups:      ops" in text
    assert "Requester 2:\n  User:        bob" in text
    assert "Owners:        Deployment/web <- ReplicaSet/web-6d4" in text
    assert "  Attempts:    2" in text


def test_select_filters_by_door_outcome_labels_and_time() -> None:
    old = record(lastAttemptTime="2026-12-03T10:00:00Z")
    new = record(lastAttemptTime="2026-12-03T11:59:00Z", sources=["EvictionAPI", "Kubelet"])
    both = [new, old]
    assert select(both, now=NOW) == [old, new]  # oldest activity first, the records as given
    assert select(both, source="Kubelet", now=NOW) == [new]
    assert select(both, outcome="EvictedByKubelet", now=NOW) == [old, new]
    assert select(both, outcome="Evicted", now=NOW) == []
    assert select(both, since=datetime.timedelta(minutes=5), now=NOW) == [new]
    assert select(both, labels={"matchLabels": {"app": "db"}}, now=NOW) == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
fields = st.sampled_from(["pod", "source", "sources", "requester", "requesters", "attempts",
                          "deleteOptions", "hold", "hooks", "pressure", "reason"])  # fmt: skip


@given(st.dictionaries(fields, json_values, max_size=4), json_values)
def test_a_record_with_fields_of_the_wrong_type_is_shown_not_a_crash(
    spec: dict[str, Any], status: Any
) -> None:
    broken = {"metadata": {"name": "x", "namespace": "shop"}, "spec": spec, "status": status}
    assert len(row(broken, NOW, wide=True)) == len(COLUMNS) + len(WIDE)
    assert describe(broken, NOW).startswith("Name:          x")
    select([broken], source="Kubelet", outcome="Evicted", labels={"matchLabels": {"a": "b"}}, now=NOW)
