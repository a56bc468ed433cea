"""Typed settings, validated at start: a wrong field fails with its path, before anything runs.

Settings come from a YAML file (``--config``); secrets may come from environment variables
instead of the file, so the file can live in a ConfigMap.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticUndefined


class ConfigError(ValueError):
    """The configuration is wrong; the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LabelSelector(_Strict):
    """A Kubernetes label selector, evaluated on the Pod's own labels."""

    matchLabels: dict[str, str] = Field(default_factory=dict)
    matchExpressions: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("matchExpressions")
    @classmethod
    def _check_expressions(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for index, expr in enumerate(value):
            operator = expr.get("operator")
            if not isinstance(expr.get("key"), str):
                raise ValueError(f"[{index}].key must be a string")
            if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
                raise ValueError(f"[{index}].operator must be In, NotIn, Exists or DoesNotExist")
            values = expr.get("values") or []
            if operator in ("In", "NotIn") and not values:
                raise ValueError(f"[{index}].values must not be empty for {operator}")
        return value


class Filter(_Strict):
    """Which evictions to capture (or deliver): by namespace and by the Pod's labels."""

    namespaces: list[str] = Field(default_factory=list, description="only these; empty means all")
    excludeNamespaces: list[str] = Field(default_factory=list, description="never these")
    podSelector: LabelSelector | None = Field(
        default=None, description="matchLabels/matchExpressions on the Pod's labels"
    )


class SelfIdentity(_Strict):
    """The operator's own Pods, never recorded (evicting them must not depend on themselves)."""

    namespace: str = Field(
        default_factory=lambda: os.environ.get("POD_NAMESPACE", "evictwatch"),
        description="the operator's namespace (its Pods are never recorded; its Lease lives here)",
    )
    labels: dict[str, str] = Field(
        default_factory=lambda: {"app.kubernetes.io/name": "evictwatch"}, description="labels of its own Pods"
    )


class WebhookConfig(_Strict):
    host: str = Field(default="0.0.0.0", description="listen address of the webhook and metrics")
    port: int = Field(default=9443, ge=0, le=65535, description="0 picks a free port")
    certFile: Path | None = Field(default=None, description="serving certificate (reloaded when it changes)")
    keyFile: Path | None = Field(default=None, description="its private key")
    clientCAFile: Path | None = Field(default=None, description="verify the API server's client certificate")
    advertiseHost: str = Field(default="127.0.0.1", description="host in the URL registered by --self-signed")
    path: str = Field(default="/validate-pods-eviction", description="URL path of the review endpoint")
    maxBodyBytes: int = Field(default=1024 * 1024, ge=1024, description="larger bodies get 413")
    podCache: bool = Field(
        default=True,
        description="keep every Pod's facts from a watch, so a review needs no GET (false: GET per review)",
    )
    failurePolicy: Literal["Ignore", "Fail"] = Field(
        default="Ignore", description="Ignore: never block a drain"
    )
    timeoutSeconds: int = Field(default=5, ge=1, le=30, description="how long the API server waits for us")
    sideEffects: Literal["None", "NoneOnDryRun"] = "NoneOnDryRun"
    matchPolicy: Literal["Exact", "Equivalent"] = "Equivalent"
    admissionReviewVersions: list[Literal["v1", "v1beta1"]] = Field(default_factory=lambda: ["v1", "v1beta1"])  # type: ignore[arg-type]
    configurationName: str = Field(
        default="evictwatch", description="ValidatingWebhookConfiguration name (--self-signed)"
    )
    namespaceSelector: LabelSelector | None = Field(
        default=None, description="which namespaces the API server sends"
    )
    failClosedNamespaceLabel: str | None = Field(
        default=None,
        description="namespaces labelled <this>=true get a second webhook with failurePolicy Fail: "
        "their evictions wait while evictwatch is down (pre-eviction hooks are never skipped)",
    )


class SinkFilter(_Strict):
    """Which settled evictions a sink receives."""

    namespaces: list[str] = Field(default_factory=list, description="only these; empty means all")
    excludeNamespaces: list[str] = Field(default_factory=list)
    podSelector: LabelSelector | None = None
    sources: list[
        Literal[
            "EvictionAPI",
            "Kubelet",
            "Preemption",
            "TaintManager",
            "PodGC",
            "DeviceTaintManager",
            "EvictionRequest",
            "Other",
        ]
    ] = Field(default_factory=list, description="empty means all")
    outcomes: list[Literal["Evicted", "Blocked", "PodGone", "EvictedByKubelet", "Failed"]] = Field(
        default_factory=list, description="empty means all"
    )

    @field_validator("outcomes")
    @classmethod
    def _rename_failed(cls, value: list[str]) -> list[str]:
        """``Failed`` is the old name of ``EvictedByKubelet``: a filter naming it keeps working."""
        return ["EvictedByKubelet" if outcome == "Failed" else outcome for outcome in value]


class _SinkBase(_Strict):
    enabled: bool = True
    filter: SinkFilter = Field(default_factory=SinkFilter)
    maxAttempts: int = Field(default=8, ge=1, le=100)


class EventsSink(_SinkBase):
    onOwner: bool = Field(default=True, description="also write the Event on the top owner")


class LogSink(_SinkBase):
    stream: Literal["stdout", "stderr"] = "stdout"


class MetricsSink(_SinkBase):
    pass


class HttpSink(_SinkBase):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=40)
    url: str | None = None
    urlEnv: str | None = Field(default=None, description="read the URL from this environment variable")
    timeoutSeconds: float = Field(default=5.0, gt=0, le=60)
    hmacSecretEnv: str | None = Field(default=None, description="sign bodies with the key in this variable")
    headers: dict[str, str] = Field(default_factory=dict)
    backoffSeconds: float = Field(default=1.0, gt=0)
    maxBackoffSeconds: float = Field(default=300.0, gt=0)


class SlackSink(HttpSink):
    pass


class HandlersSink(_Strict):
    maxAttempts: int = Field(default=5, ge=1, le=100)
    backoffSeconds: float = Field(default=1.0, gt=0)


class Sinks(_Strict):
    events: EventsSink = Field(default_factory=EventsSink)
    metrics: MetricsSink = Field(default_factory=MetricsSink)
    log: LogSink = Field(default_factory=LogSink)
    http: list[HttpSink] = Field(default_factory=list)
    slack: list[SlackSink] = Field(default_factory=list)
    handlers: HandlersSink = Field(default_factory=HandlersSink)


class Retention(_Strict):
    ttlSeconds: int = Field(default=7 * 24 * 3600, ge=60)
    maxPerNamespace: int = Field(default=1000, ge=1)
    intervalSeconds: float = Field(default=300.0, gt=0)


class LeaderElection(_Strict):
    enabled: bool = True
    leaseName: str = "evictwatch-controller"
    leaseDurationSeconds: float = Field(default=15.0, gt=1)
    renewSeconds: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _renew_well_within_the_lease(self) -> LeaderElection:
        # The leader steps down 2/3 of a lease after its last renewal: it must get to try again first.
        if self.renewSeconds >= self.leaseDurationSeconds * 2 / 3:
            raise ValueError("renewSeconds must be less than 2/3 of leaseDurationSeconds")
        return self


class ControllerConfig(_Strict):
    enabled: bool = True
    workers: int = Field(default=16, ge=1, le=64, description="records settled at once (the work is I/O)")
    blockedAfterSeconds: float = Field(default=30.0, gt=0, description="no deletion this long after: Blocked")
    retention: Retention = Field(default_factory=Retention)
    leaderElection: LeaderElection = Field(default_factory=LeaderElection)


class WatchersConfig(_Strict):
    enabled: bool = True
    pods: bool = Field(default=True, description="record what Pods show: kubelet evictions, DisruptionTarget")
    events: bool = Field(
        default=True, description="watch Events on Pods for the why (evidence only: never a record)"
    )
    evictionRequests: bool = Field(
        default=True,
        description="watch EvictionRequests and Evictions (lifecycle.k8s.io/v1alpha1) where they are served",
    )


class Hook(_Strict):
    """A pre-eviction hook: work done before a Pod goes; the eviction is held (429) meanwhile."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    url: str | None = Field(default=None, description="POST the record here: 200 done, 202 still working")
    urlEnv: str | None = Field(default=None, description="read the URL from this environment variable")
    handler: str | None = Field(
        default=None,
        description="module:function of an async Python handler (or register one with "
        "@evictwatch.before_eviction(name))",
    )
    timeoutSeconds: float = Field(
        default=300.0, gt=0, le=86400, description="the longest an eviction is held; then it is allowed"
    )
    retryAfterSeconds: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="how often the hook is asked again while it works, each call timed 1 s before "
        "the evicting client's next try is due (set it to their retry interval: kubectl drain 5 s)",
    )
    callTimeoutSeconds: float = Field(
        default=10.0, gt=0, le=60, description="no answer within this is a failed call"
    )
    hmacSecretEnv: str | None = Field(default=None, description="sign bodies with the key in this variable")
    headers: dict[str, str] = Field(default_factory=dict)
    namespaces: list[str] = Field(
        default_factory=list, description="Pods in these namespaces get the hook without an annotation"
    )
    podSelector: LabelSelector | None = Field(
        default=None, description="Pods matching these labels get the hook without an annotation"
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Hook:
        if self.url and self.urlEnv:
            raise ValueError("set url or urlEnv, not both")
        if (self.url or self.urlEnv) and self.handler:
            raise ValueError("set a URL or a handler, not both")
        if self.handler is not None and ":" not in self.handler:
            raise ValueError("handler must be module:function")
        return self


class Config(_Strict):
    capture: Filter = Field(default_factory=Filter)
    self: SelfIdentity = Field(default_factory=SelfIdentity)
    webhook: WebhookConfig = Field(default_factory=WebhookConfig)
    logFormat: Literal["text", "json"] = Field(default="text", description="json: one JSON object per line")
    logLevel: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metricsPort: int = Field(default=8080, ge=0, le=65535, description="/metrics; 0 disables")
    controller: ControllerConfig = Field(default_factory=ControllerConfig)
    watchers: WatchersConfig = Field(default_factory=WatchersConfig)
    sinks: Sinks = Field(default_factory=Sinks)
    hooks: list[Hook] = Field(
        default_factory=list,
        description="pre-eviction hooks: evictions of their Pods wait until they are done",
    )

    @field_validator("hooks")
    @classmethod
    def _unique_hook_names(cls, value: list[Hook]) -> list[Hook]:
        names = [hook.name for hook in value]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise ValueError(f"[{index}].name: {name} is used twice")
        return value

    def check_environment(self, environ: Mapping[str, str]) -> None:
        """Secrets named by *Env fields must be set: fail at start, naming the field."""
        for kind in ("http", "slack"):
            for index, sink in enumerate(getattr(self.sinks, kind)):
                if not sink.url and not sink.urlEnv:
                    raise ConfigError(f"sinks.{kind}.{index}.url: set url or urlEnv")
                for attr in ("urlEnv", "hmacSecretEnv"):
                    name = getattr(sink, attr)
                    if name and not environ.get(name):
                        raise ConfigError(
                            f"sinks.{kind}.{index}.{attr}: environment variable {name} is not set"
                        )
        for index, hook in enumerate(self.hooks):
            for attr in ("urlEnv", "hmacSecretEnv"):
                name = getattr(hook, attr)
                if name and not environ.get(name):
                    raise ConfigError(f"hooks.{index}.{attr}: environment variable {name} is not set")


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"]) or "(top level)"
        problems.append(f"{path}: {item['msg']}")
    return "; ".join(problems)


def parse_config(data: Any, origin: str = "config") -> Config:
    """Validate a decoded YAML/JSON document."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the top level must be a mapping")
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{origin}: {_describe(error)}") from None


def load_config_file(path: str | os.PathLike[str] | None) -> Config:
    """Read and validate the YAML file, or return the defaults when no file is named."""
    if path is None:
        return Config()
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return parse_config(data, str(path))


def reference(model: type[BaseModel] = Config, prefix: str = "") -> list[tuple[str, str, str]]:
    """Every option as (path, default, description), walking nested settings; for the README."""
    rows: list[tuple[str, str, str]] = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        annotation = info.annotation
        nested = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        if nested is not None and nested is not LabelSelector:
            rows.extend(reference(nested, f"{path}."))
            continue
        item = next(iter(getattr(annotation, "__args__", ())), None)
        if isinstance(item, type) and issubclass(item, BaseModel) and item is not LabelSelector:
            rows.append((path, "[]", info.description or f"a list of {item.__name__} entries:"))
            rows.extend(reference(item, f"{path}[]."))
            continue
        if info.default_factory is not None:
            default: Any = info.default_factory()  # type: ignore[call-arg]
        else:
            default = info.default
        if isinstance(default, BaseModel):
            default = default.model_dump()
        if default is None or default is PydanticUndefined:
            shown = "—" if default is None else "(required)"
        else:
            shown = yaml.safe_dump(default, default_flow_style=True).strip().removesuffix("...").strip()
        if path == "self.namespace":
            shown = "$POD_NAMESPACE or evictwatch"
        rows.append((path, shown, info.description or ""))
    return rows


def reference_markdown() -> str:
    lines = ["| option | default | notes |", "| --- | --- | --- |"]
    lines += [f"| `{path}` | `{default}` | {notes} |" for path, default, notes in reference()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference_markdown())
