"""Typed settings, validated at start: a wrong field fails with its path, before anything runs.

Settings come from a YAML file (``--config``); secrets may come from environment variables
instead of the file, so the file can live in a ConfigMap.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


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
    excludeNamespaces: list[str] = Field(default_factory=list)
    podSelector: LabelSelector | None = None


class SelfIdentity(_Strict):
    """The operator's own Pods, never recorded (evicting them must not depend on themselves)."""

    namespace: str = Field(default_factory=lambda: os.environ.get("POD_NAMESPACE", "evictwatch"))
    labels: dict[str, str] = Field(default_factory=lambda: {"app.kubernetes.io/name": "evictwatch"})


class WebhookConfig(_Strict):
    host: str = "0.0.0.0"
    port: int = Field(default=9443, ge=0, le=65535, description="0 picks a free port")
    certFile: Path | None = None
    keyFile: Path | None = None
    clientCAFile: Path | None = Field(default=None, description="verify the API server's client certificate")
    selfSigned: bool = False
    advertiseHost: str = "127.0.0.1"
    path: str = "/validate-pods-eviction"
    maxBodyBytes: int = Field(default=1024 * 1024, ge=1024)
    failurePolicy: Literal["Ignore", "Fail"] = "Ignore"
    timeoutSeconds: int = Field(default=5, ge=1, le=30)
    sideEffects: Literal["None", "NoneOnDryRun"] = "NoneOnDryRun"
    matchPolicy: Literal["Exact", "Equivalent"] = "Equivalent"
    admissionReviewVersions: list[Literal["v1", "v1beta1"]] = Field(default_factory=lambda: ["v1", "v1beta1"])  # type: ignore[arg-type]
    configurationName: str = "evictwatch"
    namespaceSelector: LabelSelector | None = None


class Config(_Strict):
    capture: Filter = Field(default_factory=Filter)
    self: SelfIdentity = Field(default_factory=SelfIdentity)
    webhook: WebhookConfig = Field(default_factory=WebhookConfig)
    logFormat: Literal["text", "json"] = "text"
    logLevel: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metricsPort: int = Field(default=8080, ge=0, le=65535)


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
