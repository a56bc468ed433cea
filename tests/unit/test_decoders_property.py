"""Property tests of the AdmissionReview decoders: whatever arrives, a result or a clear refusal.

The webhook port is reachable by anything in the cluster network, and the API server itself
may one day send a shape we have not seen. For every input -- arbitrary bytes, any JSON value,
and the real captured reviews with fields dropped or replaced by random JSON -- the decoders
either return typed values or raise :class:`ReviewError` / :class:`NotAnEviction` with a
message that says what is wrong. Never another exception (a KeyError, TypeError,
RecursionError, ... would be an HTTP 500 and a traceback in the log).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from evictwatch.model.admission import (
    AdmissionRequest,
    NotAnEviction,
    ReviewError,
    build_response,
    decode_eviction,
    parse_review,
    review_from_json,
)
from evictwatch.model.types import EvictionAttempt

FIXTURES = Path(__file__).parents[1] / "fixtures" / "admission-reviews"
REVIEWS: dict[str, dict[str, Any]] = {
    path.stem: json.loads(path.read_text()) for path in sorted(FIXTURES.glob("*.json"))
}
EVICTION_REVIEWS = {
    name: review for name, review in REVIEWS.items() if review["request"]["kind"]["kind"] == "Eviction"
}

SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=15), children, max_size=5)
    ),
    max_leaves=30,
)
# Keys the decoders look at, so random objects hit the interesting paths more often.
KNOWN_KEYS = [
    "apiVersion",
    "kind",
    "request",
    "uid",
    "operation",
    "object",
    "metadata",
    "name",
    "namespace",
    "dryRun",
    "options",
    "userInfo",
    "username",
    "groups",
    "extra",
    "deleteOptions",
    "preconditions",
    "gracePeriodSeconds",
    "propagationPolicy",
    "managedFields",
    "manager",
    "subResource",
    "version",
    "group",
]
keyed_values = st.recursive(
    scalars | st.sampled_from(["CREATE", "Eviction", "admission.k8s.io/v1", "All", "policy/v1"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=40,
)
small_keyed_values = st.recursive(
    scalars | st.sampled_from(["CREATE", "Eviction", "All", "policy/v1"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(KNOWN_KEYS), children, max_size=3)
    ),
    max_leaves=8,
)


def check_message(error: Exception) -> None:
    message = str(error)
    assert isinstance(message, str) and message.strip(), f"{type(error).__name__} without a message"
    assert "Traceback" not in message


def decode_all(body: bytes) -> tuple[AdmissionRequest, EvictionAttempt | None] | None:
    """Run the webhook's decoding steps; None when refused, with the refusal checked."""
    try:
        request = parse_review(body)
    except ReviewError as error:
        check_message(error)
        return None
    check_request(request)
    try:
        attempt = decode_eviction(request)
    except (ReviewError, NotAnEviction) as error:
        check_message(error)
        json.dumps(build_response(request, allowed=False, code=400, message=str(error)))
        return request, None
    check_attempt(attempt)
    json.dumps(build_response(request, allowed=True))
    return request, attempt


def check_request(request: AdmissionRequest) -> None:
    for name in ("api_version", "uid", "operation", "kind", "name", "namespace", "sub_resource"):
        assert isinstance(getattr(request, name), str), name
    assert request.uid
    assert isinstance(request.dry_run, bool)
    assert isinstance(request.user_info, dict)


def check_attempt(attempt: EvictionAttempt) -> None:
    assert isinstance(attempt.namespace, str) and attempt.namespace
    assert isinstance(attempt.pod_name, str) and attempt.pod_name
    assert isinstance(attempt.dry_run, bool)
    assert isinstance(attempt.policy_version, str)
    grace = attempt.delete_options.grace_period_seconds
    assert grace is None or (isinstance(grace, int) and not isinstance(grace, bool))
    assert all(isinstance(group, str) for group in attempt.requester.groups)
    assert isinstance(attempt.requester.username, str)


# ---- arbitrary input ----------------------------------------------------------------------------
@SETTINGS
@given(st.binary(max_size=2000))
@example(b"")
@example(b"   \n")
@example(b"\xff\xfe\x00")
@example(b"[" * 100_000)
@example(b'{"a":' * 10_000)
@example(b"1" * 5000)
@example(b'"\\ud800"')
@example(b"NaN")
@example(b"{}")
@example(b"null")
def test_any_bytes_decode_or_are_refused(body: bytes) -> None:
    decode_all(body)


@SETTINGS
@given(st.text(max_size=500))
def test_any_text_decodes_or_is_refused(text: str) -> None:
    try:
        request = parse_review(text)
    except ReviewError as error:
        check_message(error)
        return
    check_request(request)


@SETTINGS
@given(json_values)
def test_any_json_value_decodes_or_is_refused(value: Any) -> None:
    decode_all(json.dumps(value).encode())


@SETTINGS
@given(keyed_values)
def test_review_shaped_json_decodes_or_is_refused(value: Any) -> None:
    try:
        request = review_from_json(value)
    except ReviewError as error:
        check_message(error)
        return
    check_request(request)
    decode_all(json.dumps(value).encode())


@SETTINGS
@given(
    request=st.dictionaries(st.sampled_from(KNOWN_KEYS), small_keyed_values, max_size=5),
    obj=st.dictionaries(st.sampled_from(KNOWN_KEYS), small_keyed_values, max_size=4),
)
def test_eviction_shaped_requests_decode_or_are_refused(request: dict[str, Any], obj: dict[str, Any]) -> None:
    request = {**request, "uid": "u-1", "operation": "CREATE", "kind": {"kind": "Eviction"}, "object": obj}
    decode_all(json.dumps({"apiVersion": "admission.k8s.io/v1", "request": request}).encode())


# ---- the real reviews, mutated ------------------------------------------------------------------
def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a field or element inside ``value``."""
    found: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for key, child in value.items():
            found.append((*prefix, key))
            found.extend(paths(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found.append((*prefix, index))
            found.extend(paths(child, (*prefix, index)))
    return found


def mutate(review: dict[str, Any], path: tuple[Any, ...], replacement: Any, drop: bool) -> dict[str, Any]:
    changed = copy.deepcopy(review)
    parent: Any = changed
    for step in path[:-1]:
        parent = parent[step]
    if drop:
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    return changed


@st.composite
def mutated_reviews(draw: st.DrawFn) -> dict[str, Any]:
    review = REVIEWS[draw(st.sampled_from(sorted(REVIEWS)))]
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        candidates = paths(review)
        if not candidates:
            break
        path = draw(st.sampled_from(candidates))
        drop = draw(st.booleans())
        review = mutate(review, path, draw(json_values), drop)
    return review


@SETTINGS
@given(mutated_reviews())
def test_mutated_real_reviews_decode_or_are_refused(review: dict[str, Any]) -> None:
    decode_all(json.dumps(review).encode())


def test_every_field_of_every_real_review_dropped_or_retyped() -> None:
    """Exhaustively: each field of each captured review, removed or given each wrong JSON type."""
    replacements: list[Any] = [None, True, 7, -1.5, "x", [], [1, "a"], {}, {"k": {"k": []}}]
    tried = 0
    for review in EVICTION_REVIEWS.values():
        for path in paths(review):
            for drop, replacement in [(True, None)] + [(False, r) for r in replacements]:
                decode_all(json.dumps(mutate(review, path, replacement, drop)).encode())
                tried += 1
    assert tried > 10_000  # the fixtures are not empty: this really tried every field


def test_refusals_name_the_field() -> None:
    review = copy.deepcopy(EVICTION_REVIEWS["arv1-kubectl-drain-1"])
    review["request"]["object"]["deleteOptions"]["gracePeriodSeconds"] = "ten"
    try:
        decode_eviction(parse_review(json.dumps(review)))
    except ReviewError as error:
        assert str(error) == "object.deleteOptions.gracePeriodSeconds must be an integer, not a string"
    else:
        raise AssertionError("a string grace period was accepted")
    for body, words in [
        (b"[" * 1000, "nests deeper"),
        (b'{"request": ', "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"request": {"uid": ""}}', "request.uid"),
        (b'{"apiVersion": "admission.k8s.io/v2", "request": {"uid": "u"}}', "not supported"),
    ]:
        try:
            parse_review(body)
        except ReviewError as error:
            assert words in str(error), (body, str(error))
        else:
            raise AssertionError(f"{body!r} was accepted")
