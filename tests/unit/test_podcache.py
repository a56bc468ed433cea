"""The webhook's Pod-facts cache: when it answers, and when it must fall back to a GET."""

from __future__ import annotations

from typing import Any, cast

from evictwatch.capture.podcache import PodFactsCache
from evictwatch.kube.api import JsonApi


class FakeApi:
    """Stands in for the API server's GET; counts the calls the cache could not save."""

    def __init__(self) -> None:
        self.gets: list[str] = []

    async def request(self, method: str, path: str, **_: Any) -> dict[str, Any]:
        self.gets.append(path)
        name = path.rsplit("/", 1)[1]
        return pod(name, uid="from-api", labels={"source": "api"})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def pod(name: str, *, uid: str = "u1", labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": uid, "labels": labels or {"app": "web"}},
        "spec": {"nodeName": "n1"},
        "status": {"phase": "Running"},
    }


def make() -> tuple[PodFactsCache, FakeApi, Clock]:
    api, clock = FakeApi(), Clock()
    cache = PodFactsCache(cast(JsonApi, api), clock=clock)
    return cache, api, clock


async def synced(cache: PodFactsCache, *pods: dict[str, Any]) -> None:
    """What ListWatch does for one full list."""
    assert cache.watch.on_list_start is not None and cache.watch.on_list_done is not None
    cache.watch.on_list_start()
    for item in pods:
        await cache.watch.handler("SYNC", item)
    cache.watch.on_list_done()
    cache.watch.synced.set()
    cache.watch.live = True  # the watch stream that follows the list is open


async def test_before_the_first_list_every_lookup_is_a_get() -> None:
    cache, api, _ = make()
    info = await cache.lookup("ns", "web-1")
    assert info.uid == "from-api"
    assert api.gets == ["/api/v1/namespaces/ns/pods/web-1"]


async def test_a_quiet_pod_is_answered_from_the_cache() -> None:
    cache, api, clock = make()
    await synced(cache, pod("web-1", labels={"app": "web", "tier": "front"}))
    clock.now += 1.5
    info = await cache.lookup("ns", "web-1")
    assert (info.uid, dict(info.labels), info.node_name) == ("u1", {"app": "web", "tier": "front"}, "n1")
    assert api.gets == []


async def test_a_pod_that_just_changed_is_read_again() -> None:
    cache, api, clock = make()
    await synced(cache, pod("web-1"))
    clock.now += 5
    await cache.watch.handler("MODIFIED", pod("web-1", labels={"app": "web", "new": "label"}))
    clock.now += 0.2
    assert (await cache.lookup("ns", "web-1")).uid == "from-api"
    clock.now += 1
    assert dict((await cache.lookup("ns", "web-1")).labels) == {"app": "web", "new": "label"}
    assert len(api.gets) == 1


async def test_an_update_that_changes_no_fact_keeps_the_pod_quiet() -> None:
    cache, api, clock = make()
    await synced(cache, pod("web-1"))
    clock.now += 5
    await cache.watch.handler("MODIFIED", pod("web-1"))
    assert (await cache.lookup("ns", "web-1")).uid == "u1"
    assert api.gets == []


async def test_unknown_pods_and_other_uids_are_read_from_the_api() -> None:
    cache, api, clock = make()
    await synced(cache, pod("web-1"))
    clock.now += 5
    await cache.lookup("ns", "web-2")
    # The Eviction requires another incarnation than the cached one: trust only the server.
    await cache.lookup("ns", "web-1", uid="u2")
    assert api.gets == ["/api/v1/namespaces/ns/pods/web-2", "/api/v1/namespaces/ns/pods/web-1"]
    assert (await cache.lookup("ns", "web-1", uid="u1")).uid == "u1"


async def test_deletes_and_relists_forget_pods() -> None:
    cache, _, _ = make()
    await synced(cache, pod("a"), pod("b"), pod("c"))
    await cache.watch.handler("DELETED", pod("a", uid="another"))  # an older incarnation
    assert ("ns", "a") in cache.pods
    await cache.watch.handler("DELETED", pod("a"))
    assert ("ns", "a") not in cache.pods
    # After a 410 the new list no longer has b: it went while the watch was away.
    await synced(cache, pod("c"))
    assert sorted(cache.pods) == [("ns", "c")]


async def test_while_the_watch_is_down_even_a_quiet_pod_is_read_again() -> None:
    """Reconnecting or re-listing: the Pod may have been replaced meanwhile, unseen."""
    cache, api, clock = make()
    await synced(cache, pod("web-1"))
    clock.now += 5
    cache.watch.live = False
    assert (await cache.lookup("ns", "web-1")).uid == "from-api"
    cache.watch.live = True
    assert (await cache.lookup("ns", "web-1")).uid == "u1"
    assert len(api.gets) == 1


def disrupted(name: str, reason: str, *, uid: str = "u1", terminating: bool = False) -> dict[str, Any]:
    obj = pod(name, uid=uid)
    obj["status"]["conditions"] = [
        {"type": "DisruptionTarget", "status": "True", "reason": reason, "message": "m"}
    ]
    if terminating:
        obj["metadata"]["deletionTimestamp"] = "2026-12-03T10:00:00Z"
    return obj


async def test_the_controller_learns_terminating_disrupted_and_gone_pods_without_a_get() -> None:
    cache, api, _ = make()
    seen: list[str] = []
    cache.on_sighting = lambda sighting: seen.append(f"{sighting.pod.name}:{sighting.source}")
    await synced(cache, pod("quiet"), pod("leaving", uid="u2"))
    state = cache.state("ns", "quiet", "u1")
    assert state and not state.terminating and state.disruption is None
    await cache.watch.handler("MODIFIED", disrupted("leaving", "PreemptionByScheduler", uid="u2"))
    await cache.watch.handler(
        "MODIFIED", disrupted("leaving", "PreemptionByScheduler", uid="u2", terminating=True)
    )
    state = cache.state("ns", "leaving", "u2")
    assert state and state.terminating and state.disruption is not None
    assert state.as_pod()["metadata"]["deletionTimestamp"]
    assert seen == ["leaving:Preemption"]  # the second event changed no disruption: told once
    await cache.watch.handler("DELETED", disrupted("leaving", "PreemptionByScheduler", uid="u2"))
    assert cache.state("ns", "leaving", "u2") is None  # gone, known from the tombstone
    assert cache.state("ns", "never-seen", "u9") is False  # only a GET can say
    assert [s.pod.name for s in cache.sightings()] == []
    assert api.gets == []


async def test_a_watch_that_is_down_makes_the_controller_ask() -> None:
    cache, _, _ = make()
    await synced(cache, disrupted("p", "DeletionByTaintManager"))
    assert [s.pod.name for s in cache.sightings()] == ["p"]
    cache.watch.live = False
    assert cache.state("ns", "p", "u1") is False
