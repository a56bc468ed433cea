"""The ValidatingWebhookConfiguration for local runs (``--self-signed`` and the sandbox).

In a cluster the Helm chart owns this object (with a ``service`` reference and a caBundle
injected by cert-manager). Locally, the process registers its own URL and CA, keeps the
bundle in step with the certificate it generated, and removes the object on a clean exit.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.metadata
from typing import Any
from urllib.parse import quote

from ..config import WebhookConfig
from ..kube.api import JsonApi
from ..kube.errors import NotFound

WEBHOOK_NAME = "pods-eviction.evictwatch.io"
FAIL_CLOSED_WEBHOOK_NAME = "pods-eviction-fail-closed.evictwatch.io"


def webhook_configuration(settings: WebhookConfig, client_config: dict[str, Any]) -> dict[str, Any]:
    """The manifest: the rules, policies and versions the reference design registers.

    With ``failClosedNamespaceLabel`` set there are two webhooks of the same endpoint: namespaces
    labelled ``<label>=true`` go to one with ``failurePolicy: Fail`` (an eviction there waits
    while evictwatch is down, so a pre-eviction hook is never skipped), all others to the usual
    one. The label splits them, so each namespace is sent exactly once.
    """
    main = _webhook(settings, client_config, WEBHOOK_NAME, settings.failurePolicy)
    webhooks = [main]
    label = settings.failClosedNamespaceLabel
    if label:
        selector = main.setdefault("namespaceSelector", {})
        closed = _webhook(settings, client_config, FAIL_CLOSED_WEBHOOK_NAME, "Fail")
        closed_selector = closed.setdefault("namespaceSelector", {})
        closed_selector.setdefault("matchLabels", {})[label] = "true"
        selector.setdefault("matchExpressions", []).append(
            {"key": label, "operator": "NotIn", "values": ["true"]}
        )
        webhooks.append(closed)
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {
            "name": settings.configurationName,
            # The version lets 'evictwatch version' tell which operator is registered.
            "labels": {
                "app.kubernetes.io/managed-by": "evictwatch",
                "app.kubernetes.io/version": importlib.metadata.version("evictwatch"),
            },
        },
        "webhooks": webhooks,
    }


def _webhook(
    settings: WebhookConfig, client_config: dict[str, Any], name: str, failure_policy: str
) -> dict[str, Any]:
    webhook: dict[str, Any] = {
        "name": name,
        "clientConfig": client_config,
        "rules": [
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["pods/eviction"],
                "operations": ["CREATE"],
                "scope": "Namespaced",
            }
        ],
        "admissionReviewVersions": list(settings.admissionReviewVersions),
        "sideEffects": settings.sideEffects,
        "matchPolicy": settings.matchPolicy,
        "failurePolicy": failure_policy,
        "timeoutSeconds": settings.timeoutSeconds,
    }
    if settings.namespaceSelector is not None:
        webhook["namespaceSelector"] = settings.namespaceSelector.model_dump(exclude_defaults=True)
    return webhook


def url_client_config(url: str, ca_pem: bytes) -> dict[str, Any]:
    return {"url": url, "caBundle": base64.b64encode(ca_pem).decode()}


_CONFIGURATIONS = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"


async def register(api: JsonApi, manifest: dict[str, Any]) -> None:
    """Create or update the configuration (server-side apply, our field manager wins)."""
    await api.request(
        "PATCH",
        f"{_CONFIGURATIONS}/{quote(manifest['metadata']['name'], safe='')}",
        manifest,
        {"fieldManager": "evictwatch", "force": "true"},
        "application/apply-patch+yaml",
    )


async def unregister(api: JsonApi, name: str) -> None:
    with contextlib.suppress(NotFound):
        await api.request("DELETE", f"{_CONFIGURATIONS}/{quote(name, safe='')}")
