"""Pre-eviction hooks as plain values: which hooks a Pod gets, and the webhook's answer."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from evictwatch.config import ConfigError, parse_config
from evictwatch.model.hooks import (
    HookRule,
    PodHooks,
    answer_hold,
    apply_hold,
    held_seconds,
    hooks_for,
    requested_names,
)
from evictwatch.model.outcome import decide
from evictwatch.model.types import Outcome

T0 = datetime.datetime(2026, 12, 3, 12, 0, 0, tzinfo=datetime.UTC)
FLUSH = HookRule("flush-cache", timeout_seconds=300, retry_after_seconds=5)
SNAP = HookRule("snapshot", timeout_seconds=60, namespaces=("db",))
LABELLED = HookRule("drain-lb", pod_selector={"matchLabels": {"app": "web"}})


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def stamp(seconds: float) -> str:
    return at(seconds).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_annotation_names_are_split_trimmed_and_deduplicated() -> None:
    assert requested_names(" flush-cache, snapshot ,flush-cache,,") == ("flush-cache", "snapshot")
    assert requested_names("") == ()


def test_a_pod_gets_hooks_by_annotation_namespace_or_labels_and_unknown_names_are_kept_apart() -> None:
    rules = [FLUSH, SNAP, LABELLED]
    assert hooks_for(rules, "shop", {}, "") == PodHooks()  # a hook without a selection is asked for
    assert hooks_for(rules, "shop", {}, "flush-cache").names == ("flush-cache",)
    assert hooks_for(rules, "db", {}, "").names == ("snapshot",)
    assert hooks_for(rules, "shop", {"app": "web"}, "").names == ("drain-lb",)
    found = hooks_for(rules, "db", {"app": "web"}, "nope, flush-cache")
    assert found.names == ("flush-cache", "snapshot", "drain-lb")  # config order
    assert found.unknown == ("nope",)


def test_the_first_attempt_is_held_with_a_message_a_person_can_act_on() -> None:
    answer = answer_hold(PodHooks((FLUSH,)), None, None, T0)
    assert not answer.allowed
    assert answer.message == (
        "evictwatch: waiting for pre-eviction hook flush-cache (started 0 s ago, at most 300 s more)"
    )
    spec = apply_hold({"attempts": 1}, answer, T0)
    assert spec["hooks"] == ["flush-cache"]
    assert spec["hold"] == {"since": stamp(0), "heldAttempts": 1}


def test_later_attempts_count_from_the_first_held_one_and_are_released_when_done() -> None:
    hooks = PodHooks((FLUSH,))
    spec = apply_hold({}, answer_hold(hooks, None, None, T0), T0)
    running = {"hooks": [{"name": "flush-cache", "state": "Running", "calls": 2}]}
    second = answer_hold(hooks, spec, running, at(12))
    assert not second.allowed
    assert "started 12 s ago, at most 288 s more" in second.message
    spec = apply_hold(spec, second, at(12))
    assert spec["hold"]["heldAttempts"] == 2
    failed = {"hooks": [{"name": "flush-cache", "state": "Failed", "calls": 3, "lastError": "HTTP 500"}]}
    assert not answer_hold(hooks, spec, failed, at(20)).allowed  # a failed call is asked again
    done = {"hooks": [{"name": "flush-cache", "state": "Done", "calls": 4}]}
    third = answer_hold(hooks, spec, done, at(25))
    assert third.allowed and third.released == "HooksDone"
    spec = apply_hold(spec, third, at(25))
    assert spec["hold"]["released"] == "HooksDone"
    assert spec["hold"]["releasedTime"] == stamp(25)
    assert spec["hold"]["heldAttempts"] == 2
    assert held_seconds(spec, at(99)) == 25.0
    # Released stays released: a PDB may refuse the allowed attempt and the drain try again.
    assert answer_hold(hooks, spec, {}, at(30)).allowed


def test_past_its_timeout_an_attempt_is_allowed_whatever_the_hook_says() -> None:
    hooks = PodHooks((FLUSH, SNAP))
    spec = apply_hold({}, answer_hold(hooks, None, None, T0), T0)
    working = {"hooks": [{"name": "flush-cache", "state": "Running"}]}
    early = answer_hold(hooks, spec, working, at(59))
    assert early.waiting_for == ("flush-cache", "snapshot")
    later = answer_hold(hooks, spec, working, at(61))
    assert later.waiting_for == ("flush-cache",) and not later.allowed  # snapshot's 60 s are up
    assert "at most 239 s more" in later.message
    last = answer_hold(hooks, spec, working, at(300))
    assert last.allowed and last.released == "TimedOut"


def test_unknown_names_alone_never_hold_but_are_recorded() -> None:
    hooks = hooks_for([FLUSH], "shop", {}, "flus-cache")
    answer = answer_hold(hooks, None, None, T0)
    assert answer.allowed
    spec = apply_hold({"attempts": 1}, answer, T0)
    assert spec == {"attempts": 1, "unknownHooks": ["flus-cache"]}


def test_a_held_eviction_the_client_gave_up_on_is_blocked_by_its_hooks() -> None:
    spec: dict[str, Any] = {
        "pod": {"name": "web-1", "uid": "u1", "found": True},
        "source": "EvictionAPI",
        "attempts": 1,
        "lastAttemptTime": stamp(0),
        "hooks": ["flush-cache"],
        "hold": {"since": stamp(0), "heldAttempts": 1},
    }
    pod = {"metadata": {"uid": "u1"}, "status": {}}
    decision = decide(spec, pod, [], at(31), 30.0)
    assert decision.outcome is Outcome.BLOCKED
    assert "held by pre-eviction hooks (flush-cache)" in decision.reason
    assert decide(spec, pod, [], at(10), 30.0).outcome is None


def test_hook_config_is_checked_at_start_naming_the_field() -> None:
    config = parse_config({"hooks": [{"name": "flush-cache", "url": "https://127.0.0.1:1/pre-evict"}]})
    assert config.hooks[0].timeoutSeconds == 300 and config.hooks[0].retryAfterSeconds == 5
    with pytest.raises(ConfigError, match=r"hooks\.0\.timeoutSeconds"):
        parse_config({"hooks": [{"name": "a", "url": "https://x", "timeoutSeconds": 0}]})
    with pytest.raises(ConfigError, match=r"hooks: .*\[1\]\.name: a is used twice"):
        parse_config({"hooks": [{"name": "a", "url": "https://x"}, {"name": "a", "url": "https://y"}]})
    with pytest.raises(ConfigError, match=r"hooks\.0: .*a URL or a handler, not both"):
        parse_config({"hooks": [{"name": "a", "url": "https://x", "handler": "m:f"}]})
    with pytest.raises(ConfigError, match=r"hooks\.0\.urlEnv: environment variable HOOK_URL is not set"):
        parse_config({"hooks": [{"name": "a", "urlEnv": "HOOK_URL"}]}).check_environment({})


def test_the_record_codec_reads_and_writes_the_hold_and_each_hooks_progress() -> None:
    from evictwatch.model.podeviction import PodEviction

    original = {
        "apiVersion": "evictwatch.io/v1alpha1",
        "kind": "PodEviction",
        "metadata": {"name": "cache-0.1a2b3c4d", "namespace": "shop"},
        "spec": {
            "pod": {"name": "cache-0", "found": True},
            "source": "EvictionAPI",
            "attempts": 3,
            "hooks": ["flush-cache"],
            "unknownHooks": ["flus-cache"],
            "hold": {
                "since": stamp(0),
                "heldAttempts": 2,
                "released": "HooksDone",
                "releasedTime": stamp(12),
            },
        },
        "status": {
            "outcome": "Evicted",
            "hooks": [
                {
                    "name": "flush-cache",
                    "state": "Done",
                    "startTime": stamp(0),
                    "endTime": stamp(10),
                    "calls": 3,
                    "lastCallTime": stamp(10),
                }
            ],
            "unknownHooks": ["flus-cache"],
        },
    }
    record = PodEviction.from_json(original)
    assert record.spec.hold is not None and record.spec.hold.held_attempts == 2
    assert record.status.hooks[0].state == "Done" and record.status.hooks[0].calls == 3
    assert record.held_seconds == 12.0
    assert record.to_json() == original
    assert PodEviction.from_json({"spec": {"hold": "nonsense", "hooks": 7}}).spec.hold is None


def test_the_report_lists_what_hooks_held_longest_first() -> None:
    from evictwatch.report.data import held_by_hooks, read_row
    from evictwatch.report.render import render
    from evictwatch.report.window import Window

    def record(pod: str, since: float, released: float | None, state: str) -> dict[str, Any]:
        hold: dict[str, Any] = {"since": stamp(since), "heldAttempts": 2}
        if released is not None:
            hold |= {"released": "HooksDone", "releasedTime": stamp(released)}
        return {
            "metadata": {"name": f"{pod}.00000000", "namespace": "shop"},
            "spec": {
                "pod": {"name": pod},
                "attempts": 3,
                "firstAttemptTime": stamp(since),
                "lastAttemptTime": stamp(released or since),
                "hooks": ["flush-cache"],
                "hold": hold,
            },
            "status": {"outcome": "Evicted", "hooks": [{"name": "flush-cache", "state": state, "calls": 4}]},
        }

    records = [
        record("short", 0, 5, "Done"),
        record("long", 0, 40, "Done"),
        {"metadata": {"name": "plain.0", "namespace": "shop"}, "spec": {"pod": {"name": "plain"}}},
    ]
    rows = [read_row(item) for item in records]
    assert [row.pod for row in held_by_hooks(rows)] == ["long", "short"]
    assert rows[1].hooks_text == "flush-cache Done (4 calls)" and rows[1].held_seconds == 40.0
    page = render(records, Window(at(-60), at(60)))
    assert "Held by pre-eviction hooks" in page and "flush-cache Done (4 calls)" in page
    assert "No eviction was held" not in page
    assert "No eviction was held" in render(records[2:], Window(at(-60), at(60)))


def test_describe_shows_the_hold_and_each_hooks_state() -> None:
    from evictwatch.views import describe

    now = datetime.datetime(2026, 12, 3, 12, 0, 0, tzinfo=datetime.UTC)
    record: dict[str, Any] = {
        "metadata": {"name": "web-0-abc", "namespace": "shop"},
        "spec": {
            "pod": {"name": "web-0", "uid": "u1"},
            "source": "EvictionAPI",
            "hooks": ["flush-cache", "notify"],
            "unknownHooks": ["typo"],
            "hold": {
                "since": "2026-12-03T11:59:00Z",
                "heldAttempts": 4,
                "released": "HooksDone",
                "releasedTime": "2026-12-03T11:59:42Z",
            },
        },
        "status": {
            "hooks": [
                {
                    "name": "flush-cache",
                    "state": "Done",
                    "calls": 3,
                    "startTime": "2026-12-03T11:59:00Z",
                    "endTime": "2026-12-03T11:59:40Z",
                }
            ]
        },
    }
    text = describe(record, now)
    assert "Hooks:         released (HooksDone) for 42s, 4 attempts answered 429" in text
    assert "flush-cache" in text and "Done after 3 calls, started 60s ago, finished 20s ago" in text
    assert "notify                   not started" in text
    assert "typo                     unknown" in text
    record["spec"]["hold"] = {"since": "2026-12-03T11:59:30Z", "heldAttempts": 1}
    assert "Hooks:         held for 30s, 1 attempt answered 429" in describe(record, now)
    del record["spec"]["hooks"], record["spec"]["unknownHooks"]
    assert "Hooks:" not in describe(record, now)


def test_a_working_hook_is_asked_again_just_before_the_clients_next_try() -> None:
    from evictwatch.model.hooks import next_call_at

    t0 = datetime.datetime(2026, 12, 3, 12, 0, 0, tzinfo=datetime.UTC)

    def at(seconds: float) -> datetime.datetime:
        return t0 + datetime.timedelta(seconds=seconds)

    # kubectl drain tries at 0, 5, 10 ...: the hook is asked at 4, 9 ..., one second ahead of each.
    assert next_call_at(at(0.3), at(0), 5) == at(4)
    assert next_call_at(at(4), at(0), 5) == at(9)
    assert next_call_at(at(9.02), at(5.01), 5) == at(14.01)  # re-anchored on the latest try
    # Never sooner than a second after the last call (the try at 5 is then too close to lead
    # it: the one at 10 is), never later than retryAfterSeconds after it.
    assert next_call_at(at(3.9), at(0), 5) == at(8.9)
    assert next_call_at(at(10), at(0), 5) == at(14)
    assert next_call_at(at(0), None, 5) == at(5)
    assert next_call_at(at(0), at(0), 2) == at(2)  # too short to lead: plain retryAfterSeconds
