"""Prometheus metrics shared by every layer (a leaf module: it imports nothing of ours).

Labels are bounded: namespace, source, component, outcome and sink names, never Pod names.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

WEBHOOK_SECONDS = Histogram(
    "evictwatch_webhook_handling_seconds",
    "Time the webhook took to answer an AdmissionReview, by decision.",
    ["decision"],
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
    registry=REGISTRY,
)
WEBHOOK_REQUESTS = Counter(
    "evictwatch_webhook_requests_total",
    "AdmissionReviews answered, by decision (recorded, late, dry_run, filtered, not_create, wrong_kind, "
    "bad_request, lost).",
    ["decision"],
    registry=REGISTRY,
)
ATTEMPTS = Counter(
    "evictwatch_eviction_attempts_total",
    "Eviction attempts recorded, by namespace, source and requester component.",
    ["namespace", "source", "component"],
    registry=REGISTRY,
)
RECORDS_LATE = Counter(
    "evictwatch_records_late_total",
    "Attempts whose record was still being written when the webhook had to answer (written after).",
    ["source"],
    registry=REGISTRY,
)
RECORDS_LOST = Counter(
    "evictwatch_records_lost_total",
    "Attempts that could not be recorded because the API write failed.",
    ["source"],
    registry=REGISTRY,
)
EVICTIONS = Counter(
    "evictwatch_evictions_total",
    "Settled evictions (one per record and outcome), by namespace, source, requester component and outcome.",
    ["namespace", "source", "component", "outcome"],
    registry=REGISTRY,
)
SINK_DELIVERIES = Counter(
    "evictwatch_sink_deliveries_total",
    "Successful deliveries to a sink.",
    ["sink"],
    registry=REGISTRY,
)
SINK_FAILURES = Counter(
    "evictwatch_sink_failures_total",
    "Failed delivery tries to a sink, by whether the delivery was given up (final) or will be retried.",
    ["sink", "final"],
    registry=REGISTRY,
)
SETTLE_SECONDS = Histogram(
    "evictwatch_settle_seconds",
    "Time from the last attempt (or first sighting) to the settled outcome.",
    ["outcome"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
    registry=REGISTRY,
)
WATCH_RESTARTS = Counter(
    "evictwatch_watch_restarts_total",
    "Watches restarted, by watched kind and reason (gone = 410 re-list, error = reconnect).",
    ["watch", "reason"],
    registry=REGISTRY,
)
RECORDS_DELETED = Counter(
    "evictwatch_records_deleted_total",
    "Records removed by retention, by reason (ttl or max_per_namespace).",
    ["reason"],
    registry=REGISTRY,
)
POD_CACHE_LOOKUPS = Counter(
    "evictwatch_pod_cache_lookups_total",
    "Webhook Pod lookups by result: hit (from the watch); miss, recent or unsynced (a GET).",
    ["result"],
    registry=REGISTRY,
)
POD_CACHE_PODS = Gauge(
    "evictwatch_pod_cache_pods",
    "Pods the webhook's Pod-facts cache holds.",
    registry=REGISTRY,
)
CACHE_OBJECTS = Gauge(
    "evictwatch_cache_objects",
    "Objects held by each watch-fed cache (nodes, poddisruptionbudgets, events, podevictions, owners).",
    ["cache"],
    registry=REGISTRY,
)
CACHE_FALLBACKS = Counter(
    "evictwatch_cache_fallbacks_total",
    "Reads that went to the API server because a cache could not know yet, by kind and why "
    "(unsynced, unseen, owner: first read of an owner).",
    ["kind", "why"],
    registry=REGISTRY,
)
UNKNOWN_DISRUPTION_REASONS = Counter(
    "evictwatch_unknown_disruption_reasons_total",
    "Pods recorded with a DisruptionTarget reason evictwatch does not know (source Other), by reason: "
    "a new door in a newer Kubernetes, or a component of the cluster's own.",
    ["reason"],
    registry=REGISTRY,
)
HOOK_HELD_ATTEMPTS = Counter(
    "evictwatch_hook_held_attempts_total",
    "Eviction attempts the webhook denied with 429 because a pre-eviction hook was still working.",
    ["namespace"],
    registry=REGISTRY,
)
HOOK_HOLD_SECONDS = Histogram(
    "evictwatch_hook_hold_seconds",
    "How long evictions were held by pre-eviction hooks (first held attempt to release), by how "
    "they were released (HooksDone or TimedOut).",
    ["released"],
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600),
    registry=REGISTRY,
)
HOOK_RESULTS = Counter(
    "evictwatch_hook_results_total",
    "Pre-eviction hooks that ended, by hook and result (Done, TimedOut, Unknown: a name a Pod asked for "
    "that the config does not have).",
    ["hook", "result"],
    registry=REGISTRY,
)
HOOK_CALLS = Counter(
    "evictwatch_hook_calls_total",
    "Calls to pre-eviction hooks, by hook and answer (done, working, failed).",
    ["hook", "answer"],
    registry=REGISTRY,
)
