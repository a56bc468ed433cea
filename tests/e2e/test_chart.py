"""The Helm chart, the plain manifests and the image recipe: rendered, linted, applied, and used.

helm renders the chart (no cluster needed); the self-signed render is then applied to the real
control plane (server-side dry run first, then for real), and the operator runs outside the
cluster with the chart's own ServiceAccount token: an eviction recorded through the webhook
proves that the chart's RBAC is enough for the webhook path, and the API server's audit log
shows that nothing that identity asked for was forbidden.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import importlib.util
import json
import re
import shlex
import ssl
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from lightkube import ApiError, AsyncClient, codecs
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.admissionregistration_v1 import ValidatingWebhookConfiguration
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.apps_v1 import ReplicaSet
from lightkube.resources.core_v1 import Namespace, Pod, Secret
from lightkube.resources.rbac_authorization_v1 import ClusterRole, ClusterRoleBinding

from evictwatch.capture import registration
from evictwatch.config import parse_config
from evictwatch.kube.api import JsonApi
from evictwatch.operator import Operator
from evictwatch.records.crd import crd_manifest
from evictwatch.records.install import ensure_crd
from evictwatch.records.resource import PodEviction
from evictwatch.testing import pki
from evictwatch.testing.cert_manager import CertManager, CertManagerProcesses, ensure_cert_manager
from evictwatch.testing.cluster import Cluster, create_namespace, unique, wait_for
from evictwatch.testing.controlplane import ControlPlane
from evictwatch.testing.helm import HelmError, ensure_helm, run_helm, template

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "evictwatch"
DEPLOY_README = REPO / "deploy" / "README.md"
FIELD_MANAGER = "evictwatch-chart-test"

# Kinds whose CRDs the test control plane lacks unless a test installs them (cert-manager's, by
# test_real_cert_manager_...; the Prometheus Operator's, never): the other tests render and
# check them, but leave them out of what they apply.
ABSENT_KINDS = {"Issuer", "Certificate", "ServiceMonitor"}

# Every permission the chart grants, one (API group, resource, verb) each. A rule added to the
# chart fails here until it is added on purpose (and to the RBAC table in deploy/README.md).
CLUSTER_ROLE_ALLOWED = {
    ("", "pods", "get"),
    ("", "pods", "list"),
    ("", "pods", "watch"),
    ("", "events", "create"),
    ("", "events", "get"),
    ("", "events", "update"),
    ("", "events", "list"),
    ("", "events", "watch"),
    ("", "nodes", "list"),
    ("", "nodes", "watch"),
    ("policy", "poddisruptionbudgets", "list"),
    ("policy", "poddisruptionbudgets", "watch"),
    ("apps", "replicasets", "get"),
    ("apps", "deployments", "get"),
    ("apps", "statefulsets", "get"),
    ("apps", "daemonsets", "get"),
    ("batch", "jobs", "get"),
    ("batch", "cronjobs", "get"),
    ("evictwatch.io", "podevictions", "get"),
    ("evictwatch.io", "podevictions", "list"),
    ("evictwatch.io", "podevictions", "watch"),
    ("evictwatch.io", "podevictions", "create"),
    ("evictwatch.io", "podevictions", "update"),
    ("evictwatch.io", "podevictions", "patch"),
    ("evictwatch.io", "podevictions", "delete"),
    ("evictwatch.io", "podevictions/status", "update"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "get"),
}
ROLE_ALLOWED = {
    ("coordination.k8s.io", "leases", "get"),
    ("coordination.k8s.io", "leases", "create"),
    ("coordination.k8s.io", "leases", "update"),
}

Doc = dict[str, Any]


# ---- helpers ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def helm() -> Path:
    return ensure_helm()


def render(
    helm: Path,
    values: dict[str, Any] | None = None,
    *,
    release: str = "evictwatch",
    namespace: str = "evictwatch-system",
    include_crds: bool = False,
) -> list[Doc]:
    text = template(CHART, release, namespace, values=values, include_crds=include_crds, helm=helm)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def kinds(docs: Iterable[Doc], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: Iterable[Doc], kind: str) -> Doc:
    found = kinds(docs, kind)
    assert len(found) == 1, f"{len(found)} {kind} objects rendered"
    return found[0]


def permissions(rules: list[Doc]) -> set[tuple[str, str, str]]:
    """(group, resource, verb) for every combination a rule list grants; no wildcards allowed."""
    granted = set()
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"unexpected rule fields: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), f"wildcard in {rule}"
                    granted.add((group, resource, verb))
    return granted


def operator_config(docs: list[Doc]) -> dict[str, Any]:
    (config_map,) = [doc for doc in kinds(docs, "ConfigMap") if "config.yaml" in doc["data"]]
    data: dict[str, Any] = yaml.safe_load(config_map["data"]["config.yaml"])
    return data


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "evictwatch_deploy_generate", REPO / "deploy" / "generate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- helm lint and the values schema ------------------------------------------------------------
@pytest.mark.parametrize("mode", ["cert-manager", "self-signed"])
def test_helm_lint_is_clean(helm: Path, mode: str) -> None:
    values = {"certificates": {"mode": mode}, "metrics": {"port": 8080, "serviceMonitor": {"enabled": True}}}
    result = run_helm(
        ["lint", "--strict", str(CHART), "--namespace", "evictwatch-system"], values=values, helm=helm
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"webhook": {"failurePolicy": "Never"}}, "/webhook/failurePolicy"),
        ({"webhook": {"timeoutSeconds": 0}}, "/webhook/timeoutSeconds"),
        ({"webhook": {"timeoutSeconds": 31}}, "/webhook/timeoutSeconds"),
        ({"replicaCount": 0}, "/replicaCount"),
        ({"replicaCount": "2"}, "/replicaCount"),
        ({"certificates": {"mode": "vault"}}, "/certificates/mode"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"webhookk": {}}, "webhookk"),
        ({"config": {"logLevel": "TRACE"}}, "/config/logLevel"),
        ({"config": {"webhok": {"timeoutSeconds": 5}}}, "webhok"),  # a typo fails the install
        ({"config": {"webhook": {"timeoutSeconds": 99}}}, "/config/webhook/timeoutSeconds"),
        ({"config": {"controller": {"workers": "many"}}}, "/config/controller/workers"),
        ({"config": {"sinks": {"slack": [{"nmae": "ops"}]}}}, "/config/sinks/slack/0"),
        (
            {"config": {"sinks": {"log": {"filter": {"outcomes": ["Gone"]}}}}},
            "/config/sinks/log/filter/outcomes/0",
        ),
        ({"rbac": {"aggregateToView": "yes"}}, "/rbac/aggregateToView"),
        ({"extraEnv": [{"value": "x"}]}, "/extraEnv/0"),
    ],
)
def test_values_schema_rejects(helm: Path, values: dict[str, Any], where: str) -> None:
    with pytest.raises(HelmError) as caught:
        render(helm, values)
    assert where in str(caught.value), str(caught.value)


# ---- what the chart renders ---------------------------------------------------------------------
def test_chart_crd_is_the_operators_crd(helm: Path) -> None:
    assert yaml.safe_load((CHART / "crds" / "podevictions.yaml").read_text()) == crd_manifest()
    crds = kinds(render(helm, include_crds=True), "CustomResourceDefinition")
    assert crds == [crd_manifest()]
    assert kinds(render(helm), "CustomResourceDefinition") == []  # crds/ is not a template


def test_generated_files_are_current(helm: Path) -> None:
    generator = load_generator()
    stale = [str(path.relative_to(REPO)) for path in generator.stale(helm)]
    assert stale == [], f"stale generated files {stale}: run python deploy/generate.py"
    plain = [doc for path in sorted((REPO / "deploy" / "manifests").glob("*.yaml"))
             for doc in yaml.safe_load_all(path.read_text()) if doc]  # fmt: skip
    assert [doc["kind"] for doc in plain[:2]] == ["Namespace", "CustomResourceDefinition"]
    assert plain[1] == crd_manifest()
    assert plain[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {"Issuer", "Certificate"} <= {doc["kind"] for doc in plain}
    assert "Secret" not in {doc["kind"] for doc in plain}  # no key or certificate in the repository
    (container,) = one(plain, "Deployment")["spec"]["template"]["spec"]["containers"]
    (key_env,) = [item for item in container["env"] if item["name"] == "EVICTWATCH_RECORD_KEY"]
    assert key_env["valueFrom"]["secretKeyRef"] == {"name": "evictwatch-record-key", "key": "key"}
    assert (
        "kubectl -n evictwatch-system create secret generic evictwatch-record-key"
        in DEPLOY_README.read_text()
    )
    for doc in plain:
        labels = doc["metadata"].get("labels", {})
        assert "helm.sh/chart" not in labels and "app.kubernetes.io/managed-by" not in labels, doc["kind"]


def test_deployment(helm: Path) -> None:
    docs = render(helm)
    deployment = one(docs, "Deployment")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    selector = spec["selector"]["matchLabels"]
    assert spec["replicas"] == 2
    assert selector == {"app.kubernetes.io/name": "evictwatch", "app.kubernetes.io/instance": "evictwatch"}
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"] == {
        "topologyKey": "kubernetes.io/hostname",
        "labelSelector": {"matchLabels": selector},
    }
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["image"] == "evictwatch:0.1.0"
    assert container["args"] == ["run", "--config", "/etc/evictwatch/config.yaml"]
    assert set(container["resources"]) == {"requests", "limits"}
    env = {item["name"]: item["valueFrom"] for item in container["env"]}
    assert env == {
        "POD_NAMESPACE": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        "POD_NAME": {"fieldRef": {"fieldPath": "metadata.name"}},
        "EVICTWATCH_RECORD_KEY": {"secretKeyRef": {"name": "evictwatch-record-key", "key": "key"}},
    }
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"webhook": 9443, "metrics": 8080}
    # Probes use the plain-HTTP metrics port: the webhook port may demand a client certificate.
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert container[probe]["httpGet"] == {"path": path, "port": "metrics", "scheme": "HTTP"}

    # The files the operator is told about are the files the volumes provide.
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    provided = set()
    for source in volumes["etc"]["projected"]["sources"]:
        for item in next(iter(source.values()))["items"]:
            provided.add(f"{mounts['etc']}/{item['path']}")
    config = parse_config(operator_config(docs))
    assert provided == {
        "/etc/evictwatch/config.yaml",
        str(config.webhook.certFile),
        str(config.webhook.keyFile),
    }
    assert (config.webhook.certFile, config.webhook.keyFile) == (
        Path("/etc/evictwatch/tls/tls.crt"),
        Path("/etc/evictwatch/tls/tls.key"),
    )
    (secret_source,) = [s["secret"] for s in volumes["etc"]["projected"]["sources"] if "secret" in s]
    assert secret_source["name"] == "evictwatch-tls"
    assert (config.webhook.port, config.metricsPort) == (9443, 8080)
    assert config.self.namespace == "evictwatch-system"
    assert config.self.labels == selector


def test_config_values_are_passed_through_but_the_wiring_wins(helm: Path) -> None:
    values = {
        "config": {
            "logLevel": "DEBUG",
            "capture": {"excludeNamespaces": ["kube-system"]},
            "self": {"namespace": "elsewhere", "labels": {"team": "ops"}},
            "webhook": {"certFile": "/somewhere/else.crt", "maxBodyBytes": 4096},
        },
        "webhook": {"port": 10443},
        "metrics": {"port": 9090},
    }
    docs = render(helm, values)
    config = parse_config(operator_config(docs))
    assert config.logLevel == "DEBUG"
    assert config.capture.excludeNamespaces == ["kube-system"]
    assert (config.self.namespace, config.self.labels) == ("elsewhere", {"team": "ops"})
    assert config.webhook.maxBodyBytes == 4096
    assert config.webhook.certFile == Path("/etc/evictwatch/tls/tls.crt")
    assert (config.webhook.port, config.metricsPort) == (10443, 9090)
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"webhook": 10443, "metrics": 9090}
    services = {s["metadata"]["name"]: s["spec"]["ports"] for s in kinds(docs, "Service")}
    assert services["evictwatch-webhook"] == [
        {"name": "https", "port": 443, "targetPort": "webhook", "protocol": "TCP"}
    ]
    assert services["evictwatch-metrics"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]


def test_pdb_services_and_service_monitor(helm: Path) -> None:
    docs = render(helm)
    selector = one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    pdb = one(docs, "PodDisruptionBudget")["spec"]
    assert pdb == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}
    for service in kinds(docs, "Service"):
        assert service["spec"]["selector"] == selector
    assert kinds(docs, "ServiceMonitor") == []
    monitored = render(helm, {"metrics": {"port": 8080, "serviceMonitor": {"enabled": True}}})
    monitor = one(monitored, "ServiceMonitor")
    metrics_service = next(
        s for s in kinds(monitored, "Service") if s["metadata"]["name"].endswith("-metrics")
    )
    assert monitor["spec"]["selector"]["matchLabels"].items() <= metrics_service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


def test_record_key_secret(helm: Path) -> None:
    docs = render(helm)
    (secret,) = [doc for doc in kinds(docs, "Secret") if doc["metadata"]["name"] == "evictwatch-record-key"]
    key = base64.b64decode(secret["data"]["key"])
    assert len(key) == 64 and key.isalnum()
    assert one(render(helm), "Secret")["data"] != secret["data"]  # random, made once per install
    own = render(helm, {"recordKey": {"existingSecret": "my-key"}})
    assert kinds(own, "Secret") == []
    (container,) = one(own, "Deployment")["spec"]["template"]["spec"]["containers"]
    (key_env,) = [item for item in container["env"] if item["name"] == "EVICTWATCH_RECORD_KEY"]
    assert key_env["valueFrom"]["secretKeyRef"] == {"name": "my-key", "key": "key"}


def test_extra_environment_for_sink_secrets(helm: Path) -> None:
    extra = [{"name": "SLACK_URL", "valueFrom": {"secretKeyRef": {"name": "slack", "key": "url"}}}]
    env_from = [{"secretRef": {"name": "sink-credentials"}}]
    docs = render(helm, {"extraEnv": extra, "envFrom": env_from})
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["env"][-1:] == extra
    assert container["envFrom"] == env_from


def test_webhook_configuration_matches_the_operators_own(helm: Path) -> None:
    docs = render(helm, {"webhook": {"failurePolicy": "Fail", "timeoutSeconds": 12}})
    (webhook,) = one(docs, "ValidatingWebhookConfiguration")["webhooks"]
    assert webhook["clientConfig"]["service"] == {
        "name": "evictwatch-webhook",
        "namespace": "evictwatch-system",
        "path": "/validate-pods-eviction",
        "port": 443,
    }
    assert (webhook["failurePolicy"], webhook["timeoutSeconds"]) == ("Fail", 12)
    settings = parse_config({"webhook": {"failurePolicy": "Fail", "timeoutSeconds": 12}}).webhook
    (local,) = registration.webhook_configuration(settings, {"url": "https://x"})["webhooks"]
    for key in ("name", "rules", "admissionReviewVersions", "sideEffects", "matchPolicy"):
        assert webhook[key] == local[key], key
    assert webhook["rules"] == [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods/eviction"],
            "operations": ["CREATE"],
            "scope": "Namespaced",
        }
    ]
    assert webhook["admissionReviewVersions"] == ["v1", "v1beta1"]
    assert (webhook["sideEffects"], webhook["matchPolicy"]) == ("NoneOnDryRun", "Equivalent")
    assert webhook["namespaceSelector"] == {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["evictwatch-system"]}
        ]
    }
    defaults = one(render(helm), "ValidatingWebhookConfiguration")["webhooks"][0]
    assert (defaults["failurePolicy"], defaults["timeoutSeconds"]) == ("Ignore", 5)


def test_user_namespace_selector_is_merged_with_the_exclusion(helm: Path) -> None:
    user = {
        "matchLabels": {"evictwatch": "on"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["prod"]}],
    }
    docs = render(helm, {"webhook": {"namespaceSelector": user}}, namespace="ops")
    (webhook,) = one(docs, "ValidatingWebhookConfiguration")["webhooks"]
    assert webhook["namespaceSelector"] == {
        "matchLabels": {"evictwatch": "on"},
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["ops"]},
            {"key": "tier", "operator": "In", "values": ["prod"]},
        ],
    }


def test_fail_closed_namespaces_get_a_second_webhook_that_fails_closed(helm: Path) -> None:
    label = "evictwatch.io/fail-closed"
    docs = render(helm, {"webhook": {"failClosedNamespaceLabel": label}}, namespace="ops")
    main, closed = one(docs, "ValidatingWebhookConfiguration")["webhooks"]
    exclude = {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["ops"]}
    assert (main["name"], main["failurePolicy"]) == ("pods-eviction.evictwatch.io", "Ignore")
    assert main["namespaceSelector"] == {
        "matchExpressions": [exclude, {"key": label, "operator": "NotIn", "values": ["true"]}]
    }
    assert (closed["name"], closed["failurePolicy"]) == ("pods-eviction-fail-closed.evictwatch.io", "Fail")
    assert closed["namespaceSelector"] == {"matchLabels": {label: "true"}, "matchExpressions": [exclude]}
    assert closed["clientConfig"] == main["clientConfig"] and closed["rules"] == main["rules"]
    # The operator's own registration (--self-signed) splits the namespaces the same way.
    settings = parse_config({"webhook": {"failClosedNamespaceLabel": label}}).webhook
    own = registration.webhook_configuration(settings, {"url": "https://127.0.0.1:1/x"})["webhooks"]
    assert [(w["name"], w["failurePolicy"]) for w in own] == [
        (main["name"], "Ignore"),
        (closed["name"], "Fail"),
    ]
    assert own[0]["namespaceSelector"] == {
        "matchExpressions": [main["namespaceSelector"]["matchExpressions"][1]]
    }
    assert own[1]["namespaceSelector"] == {"matchLabels": {label: "true"}}


def test_cert_manager_mode(helm: Path) -> None:
    docs = render(helm, namespace="ops", release="ew")
    issuer = one(docs, "Issuer")
    certificate = one(docs, "Certificate")
    configuration = one(docs, "ValidatingWebhookConfiguration")
    assert issuer["spec"] == {"selfSigned": {}}
    spec = certificate["spec"]
    assert spec["secretName"] == "ew-evictwatch-tls"
    assert spec["dnsNames"] == [
        "ew-evictwatch-webhook",
        "ew-evictwatch-webhook.ops",
        "ew-evictwatch-webhook.ops.svc",
    ]
    assert spec["issuerRef"] == {
        "name": issuer["metadata"]["name"],
        "kind": "Issuer",
        "group": "cert-manager.io",
    }
    assert configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        f"ops/{certificate['metadata']['name']}"
    )
    assert "caBundle" not in configuration["webhooks"][0]["clientConfig"]
    assert [
        doc for doc in kinds(docs, "Secret") if doc["type"] == "kubernetes.io/tls"
    ] == []  # cert-manager's
    volumes = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    secrets = [
        s["secret"]["name"]
        for v in volumes
        for s in v.get("projected", {}).get("sources", [])
        if "secret" in s
    ]
    assert secrets == [spec["secretName"]]


def test_self_signed_mode_certificate_is_valid_for_the_service(helm: Path) -> None:
    docs = render(helm, {"certificates": {"mode": "self-signed"}}, namespace="ops", release="ew")
    assert kinds(docs, "Issuer") == kinds(docs, "Certificate") == []
    (secret,) = [doc for doc in kinds(docs, "Secret") if doc["type"] == "kubernetes.io/tls"]
    assert secret["metadata"]["name"] == "ew-evictwatch-tls"
    data = {key: base64.b64decode(value) for key, value in secret["data"].items()}
    configuration = one(docs, "ValidatingWebhookConfiguration")
    assert "annotations" not in configuration["metadata"]
    ca_bundle = configuration["webhooks"][0]["clientConfig"]["caBundle"]
    assert base64.b64decode(ca_bundle) == data["ca.crt"]

    ca = x509.load_pem_x509_certificate(data["ca.crt"])
    cert = x509.load_pem_x509_certificate(data["tls.crt"])
    key = serialization.load_pem_private_key(data["tls.key"], password=None)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert cert.issuer == ca.subject
    ca_key = ca.public_key()
    assert isinstance(ca_key, rsa.RSAPublicKey)
    assert cert.signature_hash_algorithm is not None
    ca_key.verify(
        cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm
    )
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [
        "ew-evictwatch-webhook",
        "ew-evictwatch-webhook.ops",
        "ew-evictwatch-webhook.ops.svc",
    ]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usages
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]


def test_values_schema_accepts_every_config_the_operator_accepts(helm: Path) -> None:
    config = {
        "logFormat": "json",
        "capture": {"namespaces": ["shop"], "podSelector": {"matchLabels": {"tier": "db"}}},
        "webhook": {"timeoutSeconds": 10, "podCache": False},
        "controller": {"blockedAfterSeconds": 45, "retention": {"ttlSeconds": 3600}},
        "sinks": {
            "slack": [{"name": "ops", "urlEnv": "SLACK_URL", "filter": {"outcomes": ["Blocked"]}}],
            "events": {"onOwner": False},
        },
    }
    parse_config(config)  # the operator takes it
    (configmap,) = [
        doc for doc in kinds(render(helm, {"config": config}), "ConfigMap") if "config.yaml" in doc["data"]
    ]
    rendered = yaml.safe_load(configmap["data"]["config.yaml"])
    assert rendered["sinks"]["slack"][0]["name"] == "ops"


def operator_role(docs: list[Doc]) -> Doc:
    (role,) = [doc for doc in kinds(docs, "ClusterRole") if not doc["metadata"]["name"].endswith("-view")]
    return role


def test_read_only_role_aggregates_to_view(helm: Path) -> None:
    docs = render(helm, namespace="ops", release="ew")
    (view,) = [doc for doc in kinds(docs, "ClusterRole") if doc["metadata"]["name"] == "ew-evictwatch-view"]
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert permissions(view["rules"]) == {
        ("evictwatch.io", "podevictions", v) for v in ("get", "list", "watch")
    }
    off = render(helm, {"rbac": {"aggregateToView": False}})
    assert [doc["metadata"]["name"] for doc in kinds(off, "ClusterRole")] == ["evictwatch"]


def test_rbac_is_exactly_the_allow_list(helm: Path) -> None:
    docs = render(helm, namespace="ops", release="ew")
    assert permissions(operator_role(docs)["rules"]) == CLUSTER_ROLE_ALLOWED
    role = one(docs, "Role")
    assert role["metadata"]["namespace"] == "ops"
    assert permissions(role["rules"]) == ROLE_ALLOWED
    account = one(docs, "ServiceAccount")["metadata"]
    subject = {"kind": "ServiceAccount", "name": account["name"], "namespace": "ops"}
    for binding, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        bound = one(docs, binding)
        assert bound["subjects"] == [subject]
        assert bound["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": role_kind,
            "name": (operator_role(docs) if role_kind == "ClusterRole" else one(docs, role_kind))["metadata"][
                "name"
            ],
        }
    assert ("", "pods/eviction", "create") not in CLUSTER_ROLE_ALLOWED  # it never evicts
    assert not any(resource == "secrets" for _, resource, _ in CLUSTER_ROLE_ALLOWED | ROLE_ALLOWED)


DOORS_ALLOWED = {
    ("resource.k8s.io", "resourceclaims", "get"),
    ("resource.k8s.io", "resourceclaims", "list"),
    ("resource.k8s.io", "resourceslices", "list"),
    ("resource.k8s.io", "devicetaintrules", "list"),
    ("lifecycle.k8s.io", "evictionrequests", "list"),
    ("lifecycle.k8s.io", "evictionrequests", "watch"),
    ("lifecycle.k8s.io", "evictions", "list"),
    ("lifecycle.k8s.io", "evictions", "watch"),
}
"""What ``doors.deviceTaints`` and ``doors.evictionRequests`` add, and nothing else."""


def test_doors_add_exactly_their_rules_and_settings(helm: Path) -> None:
    docs = render(helm, {"doors": {"deviceTaints": True, "evictionRequests": True}})
    assert permissions(operator_role(docs)["rules"]) == CLUSTER_ROLE_ALLOWED | DOORS_ALLOWED
    assert operator_config(docs)["watchers"]["evictionRequests"] is True
    default = render(helm)
    assert permissions(operator_role(default)["rules"]) == CLUSTER_ROLE_ALLOWED
    assert operator_config(default)["watchers"]["evictionRequests"] is False  # no grant, no discovery


def test_readme_rbac_table_is_the_allow_list() -> None:
    text = DEPLOY_README.read_text()
    section = text.split("\n## RBAC\n", 1)[1].split("\n## ", 1)[0]
    documented = set()
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue
        group = cells[0].strip("`").replace('""', "")
        resource = cells[1].strip("`")
        for verb in cells[2].split(","):
            documented.add((group, resource, verb.strip()))
    assert documented == CLUSTER_ROLE_ALLOWED | ROLE_ALLOWED


# ---- the image recipe ---------------------------------------------------------------------------
def dockerfile_stages(text: str) -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages as (INSTRUCTION, arguments), continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    stages: list[list[tuple[str, str]]] = [[]]
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            stages.append([])
        stages[-1].append((instruction, arguments.strip()))
    return stages


def test_dockerfile_final_stage_is_minimal_and_non_root() -> None:
    stages = dockerfile_stages((REPO / "Dockerfile").read_text())
    preamble, *built = stages
    assert len(built) == 2, "expected a builder stage and a final stage"
    args = dict(a.split("=", 1) for i, a in preamble if i == "ARG" and "=" in a)
    builder, final = built

    def base(stage: list[tuple[str, str]]) -> str:
        image = stage[0][1].split()[0]
        return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)

    assert base(builder) == base(final) == "python:3.11-slim"
    assert any(i == "RUN" and "pip wheel" in a for i, a in builder)

    users = [a for i, a in final if i == "USER"]
    assert users, "the final stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0") and user == "10001"
    runs = " ".join(a for i, a in final if i == "RUN")
    for tool in ("gcc", "g++", "build-essential", "make", "clang", "apt-get install", "pip install"):
        assert not re.search(rf"(^|\s){re.escape(tool)}(\s|$)", runs), f"{tool} in the final stage"
    copies = [a for i, a in final if i == "COPY"]
    assert copies == ["--from=builder /opt/evictwatch /opt/evictwatch"]
    assert [json.loads(a) for i, a in final if i == "ENTRYPOINT"] == [["evictwatch"]]
    cmd = [json.loads(a) for i, a in final if i == "CMD"]
    assert cmd == [shlex.split("run --config /etc/evictwatch/config.yaml")]
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignored and "!src/" in ignored, ".dockerignore lets in only what the build needs"


# ---- helm itself --------------------------------------------------------------------------------
def test_ensure_helm_without_go_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # neither helm nor go
    monkeypatch.setenv("EVICTWATCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EVICTWATCH_HELM", raising=False)
    with pytest.raises(HelmError, match=r"Neither helm nor the Go toolchain is on PATH: install helm, or Go"):
        ensure_helm()


def test_helm_runs(helm: Path) -> None:
    result = run_helm(["version", "--template", "{{ .Version }}"], helm=helm)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"v[34]\.\d+\.\d+\S*", result.stdout.strip()), result.stdout


# ---- on the real control plane ------------------------------------------------------------------
@pytest.fixture
async def release_namespace(kube: AsyncClient) -> AsyncIterator[str]:
    """An ``evictwatch-system``-like namespace that enforces the restricted Pod Security Standard."""
    name = await create_namespace(
        kube,
        unique("evictwatch-system"),
        labels={
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/warn": "restricted",
        },
    )
    try:
        yield name
    finally:
        await kube.delete(Namespace, name)


async def apply_all(kube: AsyncClient, docs: list[Doc], *, dry_run: bool) -> list[Any]:
    applied = []
    for doc in docs:
        obj = codecs.from_dict(doc)
        try:
            applied.append(await kube.apply(obj, field_manager=FIELD_MANAGER, dry_run=dry_run))
        except ApiError as error:
            raise AssertionError(
                f"{'dry run of ' if dry_run else ''}{doc['kind']}/{doc['metadata']['name']} refused: "
                f"{error.status.message}"
            ) from None
    return applied


def to_apply(docs: list[Doc]) -> list[Doc]:
    # cert-manager's and the Prometheus Operator's CRDs are absent on the test control plane:
    # their kinds are checked from the render (test_cert_manager_mode) and not applied.
    return [doc for doc in docs if doc["kind"] not in ABSENT_KINDS]


async def delete_cluster_scoped(kube: AsyncClient, name: str) -> None:
    for resource in (ValidatingWebhookConfiguration, ClusterRoleBinding, ClusterRole):
        with contextlib.suppress(ApiError):
            await kube.delete(resource, name)
    with contextlib.suppress(ApiError):
        await kube.delete(ClusterRole, f"{name}-view")


async def test_cert_manager_render_is_accepted_by_the_api_server(
    helm: Path, kube: AsyncClient, release_namespace: str
) -> None:
    docs = render(
        helm,
        {"metrics": {"port": 8080, "serviceMonitor": {"enabled": True}}},
        release=unique("evictwatch"),
        namespace=release_namespace,
        include_crds=True,
    )
    applicable = to_apply(docs)
    assert {doc["kind"] for doc in docs} - {doc["kind"] for doc in applicable} == ABSENT_KINDS
    applied = await apply_all(kube, applicable, dry_run=True)
    assert len(applied) == len(applicable)
    configuration = next(obj for obj in applied if isinstance(obj, ValidatingWebhookConfiguration))
    assert configuration.metadata is not None and configuration.metadata.annotations is not None
    assert "cert-manager.io/inject-ca-from" in configuration.metadata.annotations


# Registered with lightkube, so that codecs.from_dict can load the chart's cert-manager objects.
CERT_MANAGER_KINDS = [
    create_namespaced_resource("cert-manager.io", "v1", kind, plural)
    for kind, plural in (("Issuer", "issuers"), ("Certificate", "certificates"))
]


@pytest.fixture(scope="session")
def cert_manager_binaries() -> CertManager:
    return ensure_cert_manager()


@pytest.fixture
async def cert_manager(
    control_plane: ControlPlane, kube: AsyncClient, cert_manager_binaries: CertManager, tmp_path: Path
) -> AsyncIterator[CertManagerProcesses]:
    """cert-manager's CRDs installed, and its controller and cainjector running."""
    for path in cert_manager_binaries.crds:
        crd = codecs.from_dict(yaml.safe_load(path.read_text()))
        await kube.apply(crd, field_manager=FIELD_MANAGER, force=True)

    async def established() -> bool | None:
        for path in cert_manager_binaries.crds:
            name = yaml.safe_load(path.read_text())["metadata"]["name"]
            crd = await kube.get(CustomResourceDefinition, name)
            conditions = (crd.status.conditions if crd.status else None) or []
            if not any(c.type == "Established" and c.status == "True" for c in conditions):
                return None
        return True

    await wait_for(established, timeout=30, what="cert-manager's CRDs Established")
    processes = CertManagerProcesses(
        cert_manager_binaries, control_plane.kubeconfig_path, tmp_path / "cm-logs"
    )
    with processes:
        yield processes


async def test_real_cert_manager_issues_the_webhook_certificate_and_injects_its_ca(
    helm: Path,
    kube: AsyncClient,
    cluster: Cluster,
    control_plane: ControlPlane,
    release_namespace: str,
    cert_manager: CertManagerProcesses,
    tmp_path: Path,
) -> None:
    release = unique("evictwatch")
    docs = render(helm, release=release, namespace=release_namespace, include_crds=True)
    applicable = [doc for doc in docs if doc["kind"] != "ServiceMonitor"]
    assert {"Issuer", "Certificate"} <= {doc["kind"] for doc in applicable}
    certificate = one(docs, "Certificate")
    chart_webhook = one(docs, "ValidatingWebhookConfiguration")
    try:
        await apply_all(kube, applicable, dry_run=False)
        path = f"/apis/cert-manager.io/v1/namespaces/{release_namespace}/certificates/"
        path += certificate["metadata"]["name"]

        async def ready() -> Doc | None:
            async with cluster.http() as http:
                current: Doc = (await http.get(path)).json()
            conditions = (current.get("status") or {}).get("conditions") or []
            return (
                current if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) else None
            )

        try:
            await wait_for(ready, timeout=60, interval=0.5, what="the Certificate Ready")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{cert_manager.tail()}") from None

        secret = await kube.get(Secret, certificate["spec"]["secretName"], namespace=release_namespace)
        data = secret.data or {}
        assert {"tls.crt", "tls.key", "ca.crt"} <= set(data), sorted(data)
        cert = x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"]))
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert names.get_values_for_type(x509.DNSName) == certificate["spec"]["dnsNames"]
        assert (
            ExtendedKeyUsageOID.SERVER_AUTH
            in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        )

        # The cainjector copies the CA into the webhook configuration the chart annotated.
        async def injected() -> str | None:
            stored = await kube.get(ValidatingWebhookConfiguration, chart_webhook["metadata"]["name"])
            bundle = stored.webhooks[0].clientConfig.caBundle if stored.webhooks else None
            return bundle or None

        try:
            bundle = await wait_for(injected, timeout=60, interval=0.5, what="the caBundle injected")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{cert_manager.tail()}") from None
        assert base64.b64decode(bundle) == base64.b64decode(data["ca.crt"])

        # The operator serves with what cert-manager wrote, and a client that trusts only the
        # injected bundle and checks the Service's name (as the API server does) accepts it.
        (tmp_path / "tls.crt").write_bytes(base64.b64decode(data["tls.crt"]))
        (tmp_path / "tls.key").write_bytes(base64.b64decode(data["tls.key"]))
        settings = operator_config(docs)
        settings["webhook"].update(
            host="127.0.0.1", port=0, certFile=str(tmp_path / "tls.crt"), keyFile=str(tmp_path / "tls.key")
        )
        settings.update(metricsPort=0, controller={"enabled": False}, watchers={"enabled": False})
        operator = Operator(
            parse_config(settings), kubeconfig=control_plane.kubeconfig_path, self_signed=False
        )
        await operator.start()
        try:
            port = int(operator.webhook_url.rsplit(":", 1)[1].split("/")[0])
            trust = ssl.create_default_context(cadata=base64.b64decode(bundle).decode())
            service_name = certificate["spec"]["dnsNames"][-1]
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=trust, server_hostname=service_name
            )
            writer.write(
                f"GET /healthz HTTP/1.1\r\nHost: {service_name}\r\nConnection: close\r\n\r\n".encode()
            )
            answer = await reader.read()
            writer.close()
            assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
            with pytest.raises(ssl.SSLCertVerificationError):
                await asyncio.open_connection(
                    "127.0.0.1", port, ssl=trust, server_hostname="elsewhere.example"
                )
        finally:
            await operator.stop()
    finally:
        await delete_cluster_scoped(kube, release)


async def test_install_without_cert_manager_fails_at_once(helm: Path, control_plane: ControlPlane) -> None:
    """On a cluster with no cert-manager, the default install stops with a line that says so."""
    with ControlPlane(binaries=control_plane.binaries, audit_log=False) as bare:
        args = ["install", "evictwatch", str(CHART), "--namespace", "evictwatch-system", "--create-namespace"]
        refused = run_helm([*args, "--dry-run=server"], helm=helm, kubeconfig=bare.kubeconfig_path)
        allowed = run_helm(
            [*args, "--dry-run=server", "--set", "certificates.mode=self-signed"],
            helm=helm,
            kubeconfig=bare.kubeconfig_path,
        )
    assert refused.returncode != 0
    assert "certificates.mode=cert-manager, but this cluster has no cert-manager" in refused.stderr
    assert "--set certificates.mode=self-signed" in refused.stderr
    assert allowed.returncode == 0, allowed.stderr


async def test_app_teams_read_records_through_view(helm: Path, kube: AsyncClient, cluster: Cluster) -> None:
    """The read-only role reaches everyone bound to the built-in view role, and only reads."""
    api = JsonApi(kube)
    await ensure_crd(api)  # when this test runs alone, no operator has installed it
    await api.close()
    release = unique("ew")
    (view,) = [
        doc
        for doc in kinds(render(helm, release=release), "ClusterRole")
        if doc["metadata"]["name"].endswith("-view")
    ]
    await apply_all(kube, [view], dry_run=False)
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "app-team-view", "namespace": cluster.namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "app-team"}],
    }
    await apply_all(kube, [binding], dry_run=False)
    path = f"/apis/evictwatch.io/v1alpha1/namespaces/{cluster.namespace}/podevictions"
    try:
        async with cluster.http(impersonate="app-team") as http:

            async def readable() -> bool:
                return (await http.get(path)).status_code == 200

            # kube-controller-manager's aggregation controller copies the rules into view.
            await wait_for(readable, timeout=30, what="view to include PodEvictions")
            assert (await http.get("/apis/evictwatch.io/v1alpha1/podevictions")).status_code == 403
            record = {"apiVersion": "evictwatch.io/v1alpha1", "kind": "PodEviction"}
            created = await http.post(path, json=record)
            assert created.status_code == 403  # read-only
    finally:
        with contextlib.suppress(ApiError):
            await kube.delete(ClusterRole, view["metadata"]["name"])


async def test_self_signed_chart_installs_and_its_rbac_serves_the_webhook(
    helm: Path,
    control_plane: ControlPlane,
    kube: AsyncClient,
    cluster: Cluster,
    release_namespace: str,
    tmp_path: Path,
) -> None:
    release = unique("evictwatch")
    docs = render(
        helm,
        {"certificates": {"mode": "self-signed"}},
        release=release,
        namespace=release_namespace,
        include_crds=True,
    )
    applicable = to_apply(docs)
    assert len(applicable) == len(docs)  # nothing in self-signed mode needs cert-manager
    try:
        # Server-side dry run: every object passes validation and admission, nothing is stored.
        await apply_all(kube, applicable, dry_run=True)
        with pytest.raises(ApiError):
            await kube.get(ClusterRole, release)
        applied = await apply_all(kube, applicable, dry_run=False)
        assert all(obj.metadata is not None and obj.metadata.uid for obj in applied)

        # kube-controller-manager makes the Deployment's Pods; the namespace enforces the
        # restricted Pod Security Standard, so they exist only if the Pod template meets it.
        selector = one(docs, "Deployment")["spec"]["selector"]["matchLabels"]

        replicas = one(docs, "Deployment")["spec"]["replicas"]

        async def pods_created() -> list[Pod]:
            pods = [pod async for pod in kube.list(Pod, namespace=release_namespace, labels=selector)]
            return pods if len(pods) == replicas else []

        try:
            await wait_for(pods_created, timeout=30, what=f"the Deployment's {replicas} Pods")
        except AssertionError:
            why = [
                condition.message
                async for replica_set in kube.list(ReplicaSet, namespace=release_namespace)
                for condition in (replica_set.status.conditions or [] if replica_set.status else [])
            ]
            raise AssertionError(f"the Deployment's Pods were not created: {why}") from None

        # The chart's own webhook points at a Service with no running Pods here: remove it, and
        # register the same webhook pointing at the operator running in this process instead.
        chart_webhook = one(docs, "ValidatingWebhookConfiguration")
        stored = await kube.get(ValidatingWebhookConfiguration, chart_webhook["metadata"]["name"])
        assert stored.webhooks is not None
        assert (
            stored.webhooks[0].clientConfig.caBundle
            == chart_webhook["webhooks"][0]["clientConfig"]["caBundle"]
        )
        await kube.delete(ValidatingWebhookConfiguration, chart_webhook["metadata"]["name"])

        # The chart's ServiceAccount's own token, and the chart's own operator settings.
        account = one(docs, "ServiceAccount")["metadata"]["name"]
        async with cluster.http() as http:
            reply = await http.post(
                f"/api/v1/namespaces/{release_namespace}/serviceaccounts/{account}/token",
                json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
            )
        reply.raise_for_status()
        username = f"system:serviceaccount:{release_namespace}:{account}"
        kubeconfig = control_plane.kubeconfig_for_token(reply.json()["status"]["token"], user=account)

        ca = pki.make_ca("chart-test-webhook-ca")
        serving = pki.issue(ca, "127.0.0.1", ip_addresses=("127.0.0.1",))
        (tmp_path / "tls.crt").write_bytes(serving.cert_pem)
        (tmp_path / "tls.key").write_bytes(serving.key_pem)
        settings = operator_config(docs)
        settings["webhook"].update(
            host="127.0.0.1",
            port=0,
            certFile=str(tmp_path / "tls.crt"),
            keyFile=str(tmp_path / "tls.key"),
        )
        settings["metricsPort"] = 0
        operator = Operator(
            parse_config(settings),
            kubeconfig=kubeconfig,
            self_signed=False,
            install_crd=True,
            environ=pod_environment(docs, pod_name=f"{release}-0"),
        )
        await operator.start()
        try:
            local = copy.deepcopy(chart_webhook)
            local["metadata"] = {"name": f"{release}-local"}
            local["webhooks"][0]["clientConfig"] = registration.url_client_config(
                operator.webhook_url, ca.cert_pem
            )
            await cluster.register_webhook(local)

            # Excluded by the chart's namespaceSelector: never sent to the webhook.
            await kube.create(codecs.from_dict(restricted_pod("neighbour", release_namespace)))
            assert (await cluster.evict("neighbour", namespace=release_namespace)).status == 201

            node = await cluster.create_node()
            await cluster.create_pod("web-1", labels={"app": "web"}, node=node, ready=True)
            reply_eviction = await cluster.evict("web-1")
            assert reply_eviction.status == 201, reply_eviction.body

            async def recorded() -> list[dict[str, Any]]:
                return [dict(item) async for item in kube.list(PodEviction, namespace=cluster.namespace)]

            (record,) = await wait_for(recorded, what="the PodEviction of web-1")

            # The controller settles records (the neighbour is gone at once): wait until it has
            # written a status, so that its requests are in the audit log checked below.
            async def status_written() -> list[Doc]:
                return [
                    e
                    for e in audit_events(control_plane, username)
                    if e["objectRef"].get("resource") == "podevictions"
                    and e["objectRef"].get("subresource") == "status"
                    and e["verb"] in ("update", "patch")
                ]

            await wait_for(status_written, timeout=30, what=f"a PodEviction status written as {username}")
            excluded = [dict(r) async for r in kube.list(PodEviction, namespace=release_namespace)]
        finally:
            await operator.stop()

        # Everything the operator asked for as the chart's ServiceAccount was allowed (the
        # webhook, the watchers and the controller alike).
        requests = audit_events(control_plane, username)
        assert requests, f"the audit log has no request made as {username}"
        forbidden = sorted(
            {
                f"{e['verb']} {e['objectRef'].get('apiGroup', '')}/{e['objectRef'].get('resource')}"
                f"{'/' + e['objectRef']['subresource'] if e['objectRef'].get('subresource') else ''}"
                f" in {e['objectRef'].get('namespace', '(cluster)')}"
                for e in requests
                if e.get("responseStatus", {}).get("code") == 403
                # Not RBAC: an earlier test's namespace is being deleted, with evicted Pods in it.
                and "is being terminated" not in e.get("responseStatus", {}).get("message", "")
            }
        )
        assert forbidden == [], f"the chart's RBAC refused the operator: {forbidden}"

        # The webhook wrote the record: only the webhook knows who asked, and it read the Pod.
        spec = record["spec"]
        assert spec["pod"]["name"] == "web-1"
        assert spec["pod"]["found"] is True
        assert spec.get("requester", {}).get("username") == "admin", spec
        assert spec["attempts"] == 1
        # The release namespace is excluded from the webhook: the watchers may record the
        # neighbour's disruption there, but never with a requester.
        assert [r["spec"]["requester"] for r in excluded if r["spec"].get("requester")] == []
    finally:
        await delete_cluster_scoped(kube, release)


async def test_helm_upgrade_keeps_the_self_signed_certificate(
    helm: Path, control_plane: ControlPlane, kube: AsyncClient, release_namespace: str
) -> None:
    """A real ``helm install`` then ``helm upgrade``: the certificate, the caBundle and the record
    key are made once and kept."""
    release = unique("evictwatch")
    values: dict[str, Any] = {"certificates": {"mode": "self-signed"}}

    async def helm_run(*args: str, values: dict[str, Any]) -> None:
        result = await asyncio.to_thread(
            run_helm,
            [*args, "--namespace", release_namespace],
            values=values,
            helm=helm,
            kubeconfig=control_plane.kubeconfig_path,
        )
        assert result.returncode == 0, f"helm {args[0]} failed:\n{result.stderr}"

    async def served() -> tuple[str, str, str, str]:
        secret = await kube.get(Secret, f"{release}-tls", namespace=release_namespace)
        record_key = await kube.get(Secret, f"{release}-record-key", namespace=release_namespace)
        configuration = await kube.get(ValidatingWebhookConfiguration, release)
        assert secret.data is not None and record_key.data is not None and configuration.webhooks is not None
        ca_bundle = configuration.webhooks[0].clientConfig.caBundle
        assert ca_bundle == secret.data["ca.crt"]
        return secret.data["tls.crt"], secret.data["tls.key"], str(ca_bundle), record_key.data["key"]

    try:
        await helm_run("install", release, str(CHART), values=values)
        first = await served()
        await helm_run("upgrade", release, str(CHART), values={**values, "webhook": {"timeoutSeconds": 7}})
        configuration = await kube.get(ValidatingWebhookConfiguration, release)
        assert configuration.webhooks is not None and configuration.webhooks[0].timeoutSeconds == 7
        assert await served() == first, "the upgrade replaced the certificate or the record key"
    finally:
        await asyncio.to_thread(
            run_helm,
            ["uninstall", release, "--namespace", release_namespace],
            helm=helm,
            kubeconfig=control_plane.kubeconfig_path,
        )
        await delete_cluster_scoped(kube, release)


def pod_environment(docs: list[Doc], *, pod_name: str) -> dict[str, str]:
    """The operator container's environment as the kubelet would give it, from the render."""
    deployment = one(docs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    fields = {"metadata.namespace": deployment["metadata"]["namespace"], "metadata.name": pod_name}
    secrets = {doc["metadata"]["name"]: doc["data"] for doc in kinds(docs, "Secret")}
    environ = {}
    for item in container["env"]:
        source = item["valueFrom"]
        if "fieldRef" in source:
            environ[item["name"]] = fields[source["fieldRef"]["fieldPath"]]
        else:
            ref = source["secretKeyRef"]
            environ[item["name"]] = base64.b64decode(secrets[ref["name"]][ref["key"]]).decode()
    return environ


def restricted_pod(name: str, namespace: str) -> Doc:
    """A Pod that the restricted Pod Security Standard admits."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "app",
                    "image": "registry.invalid/app:1",
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }
            ],
        },
    }


def audit_events(control_plane: ControlPlane, username: str) -> list[Doc]:
    """The audit log's resource requests made as ``username``."""
    found = []
    with control_plane.audit_log_path.open() as log:
        for line in log:
            event = json.loads(line)
            if event.get("user", {}).get("username") == username and "objectRef" in event:
                found.append(event)
    return found


def test_grafana_dashboard_configmap(helm: Path) -> None:
    from evictwatch.testing.dashboard import load_dashboard

    def dashboard() -> dict[str, Any]:
        return load_dashboard(REPO / "deploy" / "grafana" / "evictwatch.json")

    (board,) = [doc for doc in kinds(render(helm), "ConfigMap") if "evictwatch.json" in doc["data"]]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(board["data"]["evictwatch.json"]) == dashboard()
    assert not [
        doc
        for doc in kinds(render(helm, {"grafanaDashboard": {"enabled": False}}), "ConfigMap")
        if "evictwatch.json" in doc["data"]
    ]
