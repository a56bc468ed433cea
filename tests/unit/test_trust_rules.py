"""The pure rules behind "nobody writes the story but the cluster" (issue 16), without a cluster.

Record names valid for any Pod name, which refusals are permanent, the aggregate of missing
Pods, the precondition refusal, and what an interrupted delivery becomes.
"""

from __future__ import annotations

import datetime
import re

from hypothesis import example, given
from hypothesis import strategies as st

from evictwatch.controller import inflight
from evictwatch.kube.client import is_permanent
from evictwatch.kube.errors import ApiError, error_for
from evictwatch.model.outcome import decide
from evictwatch.model.record import (
    MISSING_PODS_KEPT,
    PodInfo,
    merge_api_attempt,
    merge_missing_pod_attempt,
    missing_pods_record_name,
    new_missing_pod_spec,
    record_name,
)
from evictwatch.model.types import DeleteOptions, EvictionAttempt, Outcome, Requester

# What the API server accepts as an object name (apimachinery's IsDNS1123Subdomain).
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)
POD_NAMES = st.lists(LABEL, min_size=1, max_size=8).map(".".join).filter(lambda n: len(n) <= 253)


def valid(name: str) -> bool:
    return len(name) <= 253 and DNS_SUBDOMAIN.fullmatch(name) is not None


@given(POD_NAMES, st.text(max_size=36))
@example("a" * 243 + "-" + "b" * 6, "uid")  # the poison of issue 16: '-' where the name is cut
@example("a" * 243 + "." + "b" * 6, "uid")
@example("a" * 242 + "-b." + "c" * 6, "")
def test_a_record_name_is_valid_for_any_valid_pod_name(pod_name: str, uid: str) -> None:
    assert valid(pod_name)
    name = record_name(pod_name, uid)
    assert valid(name), name
    if len(pod_name) <= 244:  # names that always fitted keep their record (and so their history)
        assert name.rsplit(".", 1)[0] == pod_name


@given(st.text(max_size=300), st.text(max_size=36))
@example("Not_A_DNS_Name", "")
def test_a_record_name_is_valid_even_for_names_no_pod_can_have(pod_name: str, uid: str) -> None:
    assert valid(record_name(pod_name, uid))


def test_names_folded_into_a_valid_one_do_not_share_a_record() -> None:
    assert record_name("Not_A_DNS_Name", "") != record_name("not-a-dns-name", "")
    assert record_name("Not_A_DNS_Name", "") != record_name("Not/A/DNS/Name", "")


def error(code: int) -> ApiError:
    return error_for(code, b'{"kind": "Status", "message": "x"}', "test")


def test_permanent_refusals_are_those_about_the_object() -> None:
    assert [code for code in (400, 413, 415, 422) if is_permanent(error(code))] == [400, 413, 415, 422]
    # Conflicts, throttling, credentials and RBAC, a CRD or namespace missing, timeouts, server errors.
    assert not any(is_permanent(error(code)) for code in (401, 403, 404, 408, 409, 429, 500, 503))
    assert not is_permanent(ConnectionError("reset"))


def test_missing_pods_aggregate_per_requester_with_a_count() -> None:
    alice, bob = Requester("alice"), Requester("bob")
    assert missing_pods_record_name("alice") != missing_pods_record_name("bob")
    assert valid(missing_pods_record_name("system:serviceaccount:ns:x" * 20))
    # Never a Pod's record: those end in "." and 8 hex digits.
    assert not re.search(r"\.[0-9a-f]{8}$", missing_pods_record_name("alice"))
    first = PodInfo("ghost-0", "n", exists=False)
    spec = new_missing_pod_spec(EvictionAttempt("n", "ghost-0", alice), first, "t0")
    for i in range(1, 30):
        pod = PodInfo(f"ghost-{i % 25}", "n", exists=False)
        spec = merge_missing_pod_attempt(spec, EvictionAttempt("n", pod.name, alice), pod, f"t{i}")
    assert spec["attempts"] == 30 and spec["firstAttemptTime"] == "t0" and spec["lastAttemptTime"] == "t29"
    assert spec["pod"] == {"name": "ghost-4", "found": False}
    assert len(spec["missingPods"]) == MISSING_PODS_KEPT and spec["missingPods"][-1] == "ghost-4"
    assert len(set(spec["missingPods"])) == MISSING_PODS_KEPT
    assert spec["requester"]["username"] == "alice" and bob.username == "bob"


NOW = datetime.datetime(2026, 12, 3, 12, 0, tzinfo=datetime.UTC)


def live_pod(uid: str) -> dict[str, object]:
    return {"metadata": {"name": "p", "uid": uid}, "status": {"phase": "Running"}}


def test_a_failed_precondition_says_so_and_not_still_running() -> None:
    wrong = EvictionAttempt("n", "p", Requester("bob"), DeleteOptions(precondition_uid="old-uid"))
    right = EvictionAttempt("n", "p", Requester("bob"))
    pod = PodInfo("p", "n", "live-uid")
    recorded = {"pod": {"name": "p", "uid": "live-uid"}, "source": "EvictionAPI"}
    spec = merge_api_attempt(recorded, wrong, pod, "")
    spec["lastAttemptTime"] = "2026-12-03T11:00:00Z"
    decision = decide(spec, live_pod("live-uid"), [], NOW, 30)
    assert decision.outcome is Outcome.BLOCKED
    assert decision.reason.startswith("the precondition failed") and "old-uid" in decision.reason
    assert "409" in decision.reason and "still running" not in decision.reason
    # A later attempt without preconditions is judged as what it is: its options replace the old ones.
    again = merge_api_attempt(spec, right, pod, "")
    again["lastAttemptTime"] = spec["lastAttemptTime"]
    assert "deleteOptions" not in again
    assert "still running" in decide(again, live_pod("live-uid"), [], NOW, 30).reason


def test_an_interrupted_send_is_resent_only_where_the_receiver_deduplicates() -> None:
    pending = {"state": "Pending", "outcome": "Evicted", "attempts": 2, "lastError": "HTTP 503"}
    mark = inflight.sending(pending, "Evicted", "t1")
    assert mark == {**pending, "state": "Sending", "time": "t1"}
    assert (
        inflight.sending({"state": "Delivered", "outcome": "Blocked", "attempts": 1}, "Evicted", "t")[
            "attempts"
        ]
        == 0
    )
    assert inflight.after_interruption(mark, "Evicted", resend=True) is None
    interrupted = inflight.after_interruption(mark, "Evicted", resend=False)
    assert interrupted is not None and interrupted["state"] == "Interrupted" and interrupted["attempts"] == 3
    assert interrupted["state"] in inflight.FINAL_STATES
    # Not an interrupted send of this outcome: nothing to resolve.
    assert inflight.after_interruption(pending, "Evicted", resend=False) is None
    assert inflight.after_interruption(mark, "Blocked", resend=False) is None


def test_which_sinks_are_marked_and_which_deduplicate() -> None:
    from evictwatch.config import SinkFilter
    from evictwatch.sinks.http import HttpSink
    from evictwatch.sinks.log import LogSink
    from evictwatch.sinks.slack import SlackSink

    http, slack = HttpSink("http:a", SinkFilter()), SlackSink("slack:b", SinkFilter())
    log = LogSink("log", SinkFilter())
    assert [inflight.marks_in_flight(s) for s in (http, slack, log)] == [False, True, False]
    assert [inflight.deduplicates(s) for s in (http, slack, log)] == [True, False, False]
