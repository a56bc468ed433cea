"""The Events sink's writes: one call per repeated Event where this process wrote it last."""

from __future__ import annotations

from typing import Any, cast

from evictwatch.config import SinkFilter
from evictwatch.kube.api import JsonApi
from evictwatch.kube.errors import Conflict, NotFound
from evictwatch.model.notice import Eviction
from evictwatch.model.types import Outcome, Source
from evictwatch.sinks.events import EventsSink


class FakeEvents:
    """An Events collection with the API server's create, GET and compare-and-swap PUT."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.version = 0

    def _stored(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        stored = {**body, "metadata": {**body["metadata"], "resourceVersion": str(self.version)}}
        self.objects[body["metadata"]["name"]] = stored
        return stored

    async def request(self, method: str, path: str, body: Any = None, **_: Any) -> dict[str, Any]:
        self.calls.append(method)
        if method == "POST":
            if body["metadata"]["name"] in self.objects:
                raise Conflict(409, "exists")
            return self._stored(body)
        name = path.rsplit("/", 1)[1]
        current = self.objects.get(name)
        if current is None:
            raise NotFound(404, "gone")
        if method == "GET":
            return current
        assert method == "PUT"
        if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]:
            raise Conflict(409, "changed")
        return self._stored(body)


def eviction(outcome: Outcome = Outcome.BLOCKED, attempts: int = 1) -> Eviction:
    return Eviction(
        namespace="shop",
        pod="web-1",
        record="rec-1",
        record_uid="r1",
        outcome=outcome,
        source=Source.EVICTION_API,
        pod_uid="p1",
        owner_kind="Deployment",
        owner_name="web",
        owner_uid="d1",
        attempts=attempts,
        first_attempt="2026-12-03T12:00:00Z",
    )


def sink(api: FakeEvents) -> EventsSink:
    return EventsSink("events", SinkFilter(), api=cast(JsonApi, api))


def counts(api: FakeEvents) -> list[tuple[str, str, int]]:
    return sorted((o["involvedObject"]["kind"], o["reason"], o["count"]) for o in api.objects.values())


async def test_a_retried_eviction_moves_its_events_on_with_one_call_each() -> None:
    api = FakeEvents()
    events = sink(api)
    await events.deliver(eviction(attempts=1))
    assert api.calls == ["POST", "POST"]  # the Pod's Event and the Deployment's
    for attempts in (2, 3):
        api.calls.clear()
        await events.deliver(eviction(attempts=attempts))
        assert api.calls == ["PUT", "PUT"]
    api.calls.clear()
    await events.deliver(eviction(Outcome.EVICTED, attempts=4))
    assert api.calls == ["PUT", "PUT"]
    assert counts(api) == [("Deployment", "Evicted", 4), ("Pod", "Evicted", 4)]
    first = {o["firstTimestamp"] for o in api.objects.values()}
    assert first == {"2026-12-03T12:00:00Z"}
    api.calls.clear()
    await events.deliver(eviction(Outcome.EVICTED, attempts=4))  # a repeated delivery
    assert api.calls == []


async def test_an_event_it_did_not_write_last_is_read_before_it_is_replaced() -> None:
    api = FakeEvents()
    await sink(api).deliver(eviction(attempts=1))
    restarted = sink(api)  # another process (a restart, a new leader) knows no versions
    api.calls.clear()
    await restarted.deliver(eviction(attempts=2))
    assert api.calls == ["POST", "GET", "PUT"] * 2
    assert counts(api) == [("Deployment", "EvictionBlocked", 2), ("Pod", "EvictionBlocked", 2)]
    api.calls.clear()
    await sink(api).deliver(eviction(attempts=2))  # the same state again: read, nothing written
    assert api.calls == ["POST", "GET"] * 2


async def test_an_event_changed_or_expired_since_our_write_is_read_again() -> None:
    api = FakeEvents()
    events = sink(api)
    await events.deliver(eviction(attempts=1))
    pod_event, owner_event = "rec-1.pod", "rec-1.deployment"
    api._stored(api.objects[pod_event])  # someone else wrote the Pod's Event meanwhile
    del api.objects[owner_event]  # and the owner's expired
    api.calls.clear()
    await events.deliver(eviction(attempts=2))
    # The Pod's Event (changed: the PUT meets 409, so read it), then the owner's (expired: 404).
    assert api.calls == ["PUT", "POST", "GET", "PUT", "PUT", "POST"]
    assert counts(api) == [("Deployment", "EvictionBlocked", 2), ("Pod", "EvictionBlocked", 2)]
