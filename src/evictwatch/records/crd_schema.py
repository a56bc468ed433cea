"""The PodEviction's OpenAPI schema: every field of ``spec`` and ``status``, with its description.

Kept apart from :mod:`.crd` (the CustomResourceDefinition around it) because it is long and
changes with every new field; ``spec`` and ``status`` are atomic maps (see :mod:`.crd`).
"""

from __future__ import annotations

from typing import Any

from ..model.types import Source

_STR: dict[str, Any] = {"type": "string"}
_STR_LIST: dict[str, Any] = {"type": "array", "items": _STR}
_TIME: dict[str, Any] = {"type": "string", "format": "date-time"}
_STR_MAP: dict[str, Any] = {"type": "object", "additionalProperties": _STR}
_SOURCES = [str(source) for source in Source]
_OUTCOMES = ["Pending", "Evicted", "Blocked", "PodGone", "EvictedByKubelet", "Failed"]
"""``Failed`` is the old name of ``EvictedByKubelet``, kept so that old records stay valid."""


def _obj(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, **extra}


def _d(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """``schema`` with a description: what ``kubectl explain pev.<field>`` prints."""
    return {**schema, "description": description}


def _owner(description: str) -> dict[str, Any]:
    return _d(
        _obj(
            {
                "apiVersion": _d(_STR, "the owner's API version, e.g. apps/v1"),
                "kind": _d(_STR, "the owner's kind, e.g. ReplicaSet or Deployment"),
                "name": _d(_STR, "the owner's name"),
                "uid": _d(_STR, "the owner's uid (Events about it carry it as involvedObject.uid)"),
            }
        ),
        description,
    )


_REQUESTER_FIELDS: dict[str, Any] = {
    "username": _d(
        _STR,
        "who the API server authenticated, e.g. admin, system:serviceaccount:NS:NAME, "
        "or system:node:<node> for the kubelet",
    ),
    "uid": _d(_STR, "the user's uid, when the authenticator gives one"),
    "groups": _d(_STR_LIST, "the user's groups"),
    "serviceAccount": _d(
        _obj({"namespace": _STR, "name": _STR}), "parsed from a system:serviceaccount:NS:NAME username"
    ),
    "fieldManager": _d(_STR, "the client's field manager (its user agent), e.g. kubectl"),
    "component": _d(
        _STR,
        "the evicting program, recognised from the identity: kubectl, cluster-autoscaler, karpenter, "
        "descheduler, kube-controller-manager, kubelet or unknown",
    ),
    "podName": _d(_STR, "for a Pod-bound service-account token: the Pod that made the call"),
}

SPEC_SCHEMA = _d(
    _obj(
        {
            "pod": _d(
                _obj(
                    {
                        "name": _d(_STR, "the evicted Pod's name"),
                        "uid": _d(_STR, "the Pod's uid (absent when it did not exist)"),
                        "found": {
                            "type": "boolean",
                            "description": "false when the Pod did not exist at the attempt",
                        },
                        "labels": _d(_STR_MAP, "the Pod's labels ('evictwatch get -l' selects on them)"),
                        "nodeName": _d(_STR, "the Node the Pod ran on"),
                        "phase": _d(_STR, "the Pod's phase when first seen"),
                        "owner": _owner("the Pod's controlling owner (often a ReplicaSet)"),
                    },
                    required=["name"],
                ),
                "the evicted Pod, as it was at the first attempt or sighting",
            ),
            "source": {
                "type": "string",
                "enum": _SOURCES,
                "description": "the first door it was seen through: EvictionAPI (drain, autoscalers, "
                "descheduler), Kubelet (node pressure), Preemption, TaintManager or PodGC",
            },
            "sources": _d(
                {"type": "array", "items": {"type": "string", "enum": _SOURCES}},
                "every door it was seen through, in order",
            ),
            "requester": _d(
                _obj(_REQUESTER_FIELDS),
                "who asked first: the caller of the first Eviction API attempt, or the kubelet "
                "(system:node:<node>) for a node-pressure eviction; later attempts never change it",
            ),
            "requesters": _d(
                {"type": "array", "items": _obj(_REQUESTER_FIELDS)},
                "every distinct requester, in the order they appeared (the first is spec.requester)",
            ),
            "policyVersion": _d(_STR, "the Eviction's apiVersion as received (policy/v1 or policy/v1beta1)"),
            "deleteOptions": _d(
                _obj(
                    {
                        "gracePeriodSeconds": {"type": "integer", "format": "int64"},
                        "preconditions": _obj({"uid": _STR, "resourceVersion": _STR}),
                        "propagationPolicy": _STR,
                    }
                ),
                "the latest attempt's deleteOptions",
            ),
            "attempts": _d(
                {"type": "integer", "format": "int64", "minimum": 0},
                "Eviction API calls at this Pod (a drain retries a blocked one every 5 s); 0 for records "
                "made by watchers",
            ),
            "firstAttemptTime": _d(_TIME, "the first attempt or sighting"),
            "lastAttemptTime": _d(_TIME, "the latest attempt or sighting"),
            "reason": {"type": "string", "description": "the evicting component's reason"},
            "message": _d(
                _STR, "the evicting component's message (for the kubelet: the Pod's status.message)"
            ),
            "pressure": _d(
                _obj({"resource": _STR, "usage": _STR, "message": _STR}),
                "for a kubelet eviction: the starved resource and the Pod's usage of it",
            ),
            "evictionRequests": {
                "type": "array",
                "description": "the EvictionRequests (lifecycle.k8s.io) that asked for this Pod's eviction",
                "items": _obj(
                    {
                        "name": _STR,
                        "requester": {
                            "type": "string",
                            "description": "spec.requester, e.g. acme.io/drainer",
                        },
                        "intent": {"type": "string", "description": "Eviction or Withdrawn"},
                        "time": _TIME,
                        "fieldManager": {"type": "string", "description": "the program that created it"},
                        "deletedTime": _TIME,
                    }
                ),
            },
            "eviction": _obj(
                {
                    "name": _STR,
                    "requesters": {"type": "array", "items": _obj({"name": _STR, "intent": _STR})},
                    "responders": {
                        "type": "array",
                        "items": _obj(
                            {
                                "name": _STR,
                                "priority": {"type": "integer"},
                                "state": _STR,
                                "startTime": _TIME,
                                "heartbeatTime": _TIME,
                                "expectedCompletionTime": _TIME,
                                "completionTime": _TIME,
                                "message": _STR,
                            }
                        ),
                    },
                    "conditions": {
                        "type": "array",
                        "items": _obj(
                            {
                                "type": _STR,
                                "status": _STR,
                                "reason": _STR,
                                "message": _STR,
                                "lastTransitionTime": _TIME,
                            }
                        ),
                    },
                },
                description="the Pod's Eviction (lifecycle.k8s.io): requesters, responders, progress",
            ),
            "missingPods": {
                "type": "array",
                "items": _STR,
                "maxItems": 20,
                "description": (
                    "an aggregated record of evictions of Pods that did not exist, one per requester: "
                    "the latest Pod names asked for (attempts counts them all)"
                ),
            },
            "hooks": _d(
                {"type": "array", "items": _STR, "maxItems": 8},
                "the pre-eviction hooks this eviction waits for, in the order they run",
            ),
            "unknownHooks": _d(
                {"type": "array", "items": _STR, "maxItems": 8},
                "hook names the Pod's evictwatch.io/pre-eviction-hooks annotation asks for that the "
                "config does not have (never held for)",
            ),
            "hold": _d(
                _obj(
                    {
                        "since": _d(_TIME, "the first attempt held (each hook's timeout counts from here)"),
                        "heldAttempts": _d({"type": "integer"}, "attempts answered 429 while hooks worked"),
                        "released": _d(
                            {"type": "string", "enum": ["HooksDone", "TimedOut"]},
                            "why an attempt was let through: every hook done, or their time up",
                        ),
                        "releasedTime": _d(_TIME, "the attempt that was let through"),
                    }
                ),
                "how the webhook held the eviction for its pre-eviction hooks",
            ),
        },
        required=["pod", "source"],
        **{"x-kubernetes-map-type": "atomic"},
    ),
    "the facts of the attempts, written by the webhook and the watchers",
)

_HOOK_PROGRESS = _obj(
    {
        "name": _STR,
        "state": {"type": "string", "enum": ["Running", "Done", "Failed", "TimedOut"]},
        "startTime": _TIME,
        "endTime": _TIME,
        "calls": {"type": "integer"},
        "lastError": _STR,
        "lastCallTime": _TIME,
    }
)

STATUS_SCHEMA = _d(
    _obj(
        {
            "hooks": _d(
                {"type": "array", "items": _HOOK_PROGRESS, "maxItems": 8},
                "each pre-eviction hook: Running, Failed (its last call failed; asked again), Done or "
                "TimedOut, with its calls and last error",
            ),
            "unknownHooks": _d(_STR_LIST, "unknown hook names already reported in an Event"),
            "outcome": {
                "type": "string",
                "enum": _OUTCOMES,
                "description": "Pending until settled; Evicted, Blocked (by a PodDisruptionBudget or "
                "otherwise not done), PodGone (no such Pod), EvictedByKubelet (node pressure; older "
                "records say Failed)",
            },
            "outcomeTime": _d(_TIME, "when the outcome was first decided"),
            "outcomeReason": _d(_STR, "why the controller decided that outcome"),
            "why": _d(
                _obj({"component": _STR, "reason": _STR, "message": _STR, "eventTime": _TIME}),
                "the evicting component's own Event (ScaleDown, a descheduler strategy, Karpenter, ...), "
                "copied before it expires",
            ),
            "owners": _d(
                {"type": "array", "items": _owner("one owner")},
                "the owner chain from the Pod's controller up to the top one (ReplicaSet, Deployment)",
            ),
            "node": _d(
                _obj({"name": _STR, "labels": _STR_MAP, "unschedulable": {"type": "boolean"}}),
                "the Node: a few well-known labels and whether it was cordoned",
            ),
            "disruptionBudgets": _d(
                {
                    "type": "array",
                    "items": _obj(
                        {
                            "name": _STR,
                            "disruptionsAllowed": {"type": "integer"},
                            "currentHealthy": {"type": "integer"},
                            "desiredHealthy": {"type": "integer"},
                            "expectedPods": {"type": "integer"},
                        }
                    ),
                },
                "the PodDisruptionBudgets selecting the Pod, with their budgets when settled",
            ),
            "deliveries": _d(
                {
                    "type": "object",
                    "additionalProperties": _obj(
                        {
                            "state": {
                                "type": "string",
                                "enum": [
                                    "Pending",
                                    "Sending",
                                    "Delivered",
                                    "Failed",
                                    "Skipped",
                                    "Interrupted",
                                ],
                            },
                            "attempts": {"type": "integer"},
                            "lastError": _STR,
                            "time": _TIME,
                            "outcome": _STR,
                            "recordAttempts": {"type": "integer"},
                        }
                    ),
                },
                "per sink: Delivered, Pending (retrying), Failed or Skipped (filtered out), and for which "
                "outcome",
            ),
            "deviceTaints": {
                "type": "array",
                "description": "for DeviceTaintManager: the NoExecute device taints that made the Pod go",
                "items": _obj(
                    {
                        "claim": _STR,
                        "request": _STR,
                        "driver": _STR,
                        "pool": _STR,
                        "device": _STR,
                        "taint": _obj({"key": _STR, "value": _STR, "effect": _STR, "timeAdded": _TIME}),
                        "slice": {
                            "type": "string",
                            "description": "the ResourceSlice that carries the taint",
                        },
                        "rule": {"type": "string", "description": "the DeviceTaintRule adding the taint"},
                    }
                ),
            },
            "observedAttempts": _d({"type": "integer"}, "spec.attempts when the outcome was decided"),
            "observedGeneration": {"type": "integer", "format": "int64"},
        },
        default={"outcome": "Pending"},
        **{"x-kubernetes-map-type": "atomic"},
    ),
    "what came of it, written by the controller",
)


STRING = _STR
object_schema = _obj
"""For :mod:`.crd`: the schema's own building blocks, for the fields around spec and status."""
