"""Security on the real control plane: TLS, client certificates, secrets, least privilege, forgery.

* The webhook speaks TLS 1.2 or newer only, and can require the API server's client
  certificate (``webhook.clientCAFile``).
* No secret -- the ServiceAccount token, sink URLs (Slack's carry a secret), HMAC keys,
  header values, the record-signing key -- appears in the operator's output, in a record,
  in an Event, in its metrics, or in what the sinks receive.
* Least privilege: every API call the operator made, as its own ServiceAccount with the
  Helm chart's RBAC, is read back from the API server's audit log during a scenario that
  exercises the webhook, the controller (every sink, Events included, every owner kind), the
  watchers, retention and leader election; the calls must be exactly what the chart grants.
* Forged records (made by someone allowed to create PodEvictions) make no notification.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import ssl
import textwrap
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import ApiError, AsyncClient, codecs
from lightkube.resources.batch_v1 import CronJob
from lightkube.resources.core_v1 import Event, Namespace, Pod
from lightkube.resources.rbac_authorization_v1 import ClusterRole, ClusterRoleBinding, Role, RoleBinding

from evictwatch.capture import registration
from evictwatch.config import parse_config
from evictwatch.kube.api import JsonApi
from evictwatch.kube.client import from_manifest
from evictwatch.records.install import ensure_crd
from evictwatch.records.resource import PodEviction
from evictwatch.testing import pki
from evictwatch.testing.cluster import Cluster, create_namespace, unique, wait_for
from evictwatch.testing.controlplane import ControlPlane, free_port
from evictwatch.testing.helm import ensure_helm, template
from evictwatch.testing.operator_process import OperatorProcess, WebhookCertificates, webhook_certificates
from evictwatch.testing.receiver import Receiver

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "evictwatch"
FIXTURES = Path(__file__).parents[1] / "fixtures" / "admission-reviews"
VALID = (FIXTURES / "arv1-kubectl-drain-1.json").read_bytes()
PATH = "/validate-pods-eviction"
Doc = dict[str, Any]

HANDLER = textwrap.dedent(
    """
    import json, os
    import evictwatch

    @evictwatch.on_eviction(name="remember")
    async def remember(eviction):
        with open(os.environ["HANDLER_OUT"], "a") as out:
            out.write(json.dumps(eviction.to_json()) + "\\n")
    """
)


# ---- TLS ----------------------------------------------------------------------------------------
async def webhook_only(
    control_plane: ControlPlane, folder: Path, certs: WebhookCertificates, **webhook: Any
) -> OperatorProcess:
    config = {
        "logFormat": "json",
        "webhook": {"host": "127.0.0.1", **certs.webhook_settings(), **webhook},
        "capture": {"namespaces": ["evictwatch-security-nothing-here"]},
        "controller": {"enabled": False},
        "watchers": {"enabled": False},
    }
    return await OperatorProcess(config, folder, control_plane.kubeconfig_path).start()


def client_context(
    ca_file: Path, *, low: ssl.TLSVersion, high: ssl.TLSVersion, cert: pki.KeyPair | None = None, folder: Path
) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(ca_file))
    # Let this client offer the old versions at all (OpenSSL's default security level forbids
    # them), so that a refusal is the server's.
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():  # TLS 1.0 and 1.1 are deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = low
        context.maximum_version = high
    if cert is not None:
        (folder / "client.crt").write_bytes(cert.cert_pem)
        (folder / "client.key").write_bytes(cert.key_pem)
        context.load_cert_chain(str(folder / "client.crt"), str(folder / "client.key"))
    return context


async def review_over(port: int, context: ssl.SSLContext) -> tuple[str, int | str]:
    """(negotiated TLS version, HTTP status) or ("refused", the reason)."""
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"
        )
    except (ssl.SSLError, ConnectionError) as error:
        return "refused", repr(error)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        version = ssl_object.version() if ssl_object is not None else "?"
        request = (
            f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(VALID)}\r\nConnection: close\r\n\r\n"
        ).encode() + VALID
        writer.write(request)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 10)
        if not line:
            return "refused", "closed without an answer"
        return version, int(line.split()[1])
    except (ssl.SSLError, ConnectionError) as error:
        return "refused", repr(error)
    finally:
        writer.close()


async def permissive_server(certs: WebhookCertificates) -> asyncio.Server:
    """A TLS server that accepts TLS 1.0 too: proof that the client below can speak the old versions."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(certs.cert_file), str(certs.key_file))
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)


async def test_only_tls_1_2_and_newer(control_plane: ControlPlane, tmp_path: Path) -> None:
    certs = webhook_certificates(tmp_path / "tls")
    operator = await webhook_only(control_plane, tmp_path / "op", certs)
    control = await permissive_server(certs)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            old = {"TLSv1": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1}
        versions = {
            **old,
            "TLSv1.2": ssl.TLSVersion.TLSv1_2,
            "TLSv1.3": ssl.TLSVersion.TLSv1_3,
        }
        results = {}
        for name, version in versions.items():
            context = client_context(certs.ca_file, low=version, high=version, folder=tmp_path)
            results[name] = await review_over(operator.webhook_port, context)
            if name in ("TLSv1", "TLSv1.1"):
                # The same client gets through to a server that allows the old version ...
                port = control.sockets[0].getsockname()[1]
                assert await review_over(port, context) == (name, 200), f"this client cannot speak {name}"
                # ... and the webhook refuses it.
                assert results[name][0] == "refused", f"{name} was accepted: {results[name]}"
        assert results["TLSv1.2"] == ("TLSv1.2", 200)
        assert results["TLSv1.3"] == ("TLSv1.3", 200)
        print(f"\nTLS versions: {results}")
    finally:
        control.close()
        await operator.stop()


async def test_client_certificate_required_when_a_client_ca_is_set(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    certs = webhook_certificates(tmp_path / "tls")
    client_ca = pki.make_ca("api-server-client-ca")
    (tmp_path / "client-ca.crt").write_bytes(client_ca.cert_pem)
    operator = await webhook_only(
        control_plane, tmp_path / "op", certs, clientCAFile=str(tmp_path / "client-ca.crt")
    )
    try:
        apiserver = pki.issue(client_ca, "kube-apiserver", server=False, client=True)
        stranger = pki.issue(pki.make_ca("someone-else"), "kube-apiserver", server=False, client=True)
        tls12, tls13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
        outcomes = {}
        for name, cert in (
            ("no certificate", None),
            ("a stranger's", stranger),
            ("the API server's", apiserver),
        ):
            for version in (tls12, tls13):
                context = client_context(certs.ca_file, low=version, high=version, cert=cert, folder=tmp_path)
                outcomes[(name, version.name)] = await review_over(operator.webhook_port, context)
        for (name, version), (verdict, _) in outcomes.items():
            if name == "the API server's":
                assert (verdict, _) == (version.replace("_", "."), 200), outcomes
            else:
                assert verdict == "refused", f"{name} certificate over {version} was served: {outcomes}"
        # The probes go through the same port: with a client CA, the kubelet would need a
        # certificate too; what matters here is that the refusals did not break serving.
        assert operator.running
        print(f"\nclient certificates: {outcomes}")
    finally:
        await operator.stop()


# ---- one scenario as the chart's ServiceAccount -------------------------------------------------
@dataclass
class Scenario:
    """What the operator did and left behind during the scenario (see :func:`scenario`)."""

    username: str
    namespace: str
    release_namespace: str
    granted: set[tuple[str, str, str]]
    lease_namespaces: set[str]
    audit: list[Doc]
    secrets: dict[str, str]
    texts: dict[str, str] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)


def permissions(rules: list[Doc]) -> set[tuple[str, str, str]]:
    granted = set()
    for rule in rules:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for verb in rule.get("verbs", []):
                    granted.add((group, resource, verb))
    return granted


def audit_events(control_plane: ControlPlane, username: str) -> list[Doc]:
    found: dict[str, Doc] = {}
    with control_plane.audit_log_path.open() as log:
        for line in log:
            if username not in line:
                continue
            event = json.loads(line)
            if event.get("user", {}).get("username") == username:
                found[event["auditID"]] = event  # one per request (ResponseStarted, then Complete)
    return list(found.values())


def call(event: Doc) -> tuple[str, str, str]:
    ref = event["objectRef"]
    resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
    return ref.get("apiGroup", ""), resource, event["verb"]


async def bind_and_ready(cluster: Cluster, pod: str, node: str) -> None:
    await cluster.bind(pod, node)
    await cluster.mark_ready(pod)


async def controlled_pods(kube: AsyncClient, namespace: str, kind: str, name: str) -> list[str]:
    pods = []
    async for pod in kube.list(Pod, namespace=namespace):
        assert pod.metadata is not None
        for ref in pod.metadata.ownerReferences or []:
            if ref.kind == kind and ref.name == name and pod.metadata.name:
                pods.append(pod.metadata.name)
    return pods


async def workload(cluster: Cluster, node: str) -> dict[str, str]:
    """A Pod of each owner kind the controller follows; returns pod -> expected outcome."""
    ns = cluster.namespace
    kube = cluster.client
    expected: dict[str, str] = {}
    shop = await cluster.create_deployment("shop", {"app": "shop"}, replicas=2)
    for pod in shop:
        await bind_and_ready(cluster, pod, node)
    await cluster.create_pdb("shop", {"app": "shop"}, min_available=2)
    expected[shop[0]] = "Blocked"

    manifests: list[Doc] = [
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": ns},
            "spec": {
                "replicas": 1,
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": {
                    "metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "db", "image": "registry.invalid/db:1"}]},
                },
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": ns},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {
                    "metadata": {"labels": {"app": "agent"}},
                    "spec": {
                        "nodeSelector": {"evictwatch.io/test-node": node},
                        "containers": [{"name": "agent", "image": "registry.invalid/agent:1"}],
                    },
                },
            },
        },
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "nightly", "namespace": ns},
            "spec": {
                "schedule": "0 3 * * *",
                "suspend": True,
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {
                                "restartPolicy": "Never",
                                "containers": [{"name": "job", "image": "registry.invalid/job:1"}],
                            }
                        }
                    }
                },
            },
        },
    ]
    for manifest in manifests:
        await kube.create(codecs.from_dict(manifest))
    cronjob = await kube.get(CronJob, "nightly", namespace=ns)
    assert cronjob.metadata is not None
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "nightly-1",
            "namespace": ns,
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "CronJob",
                    "name": "nightly",
                    "uid": cronjob.metadata.uid,
                    "controller": True,
                }
            ],
        },
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "job", "image": "registry.invalid/job:1"}],
                }
            }
        },
    }
    await kube.create(codecs.from_dict(job))
    for kind, name in (("StatefulSet", "db"), ("DaemonSet", "agent"), ("Job", "nightly-1")):

        async def made(kind: str = kind, name: str = name) -> list[str]:
            return await controlled_pods(kube, ns, kind, name)

        (pod,) = await wait_for(made, timeout=30, what=f"the Pod of {kind} {name}")
        await bind_and_ready(cluster, pod, node)  # there is no scheduler: bind as it would
        expected[pod] = "Evicted"
    return expected


@pytest.fixture(scope="module")
async def scenario(
    control_plane: ControlPlane, kube: AsyncClient, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Scenario]:
    folder = tmp_path_factory.mktemp("security")
    api = JsonApi(kube)
    await ensure_crd(api)
    await api.close()
    release = unique("ew-sec")
    release_ns = await create_namespace(kube, release)
    namespace = await create_namespace(kube, unique("ew-sec-app"))
    cluster = Cluster(control_plane, kube, namespace)
    docs = [
        doc for doc in yaml.safe_load_all(template(CHART, release, release_ns, helm=ensure_helm())) if doc
    ]
    rbac = [
        d
        for d in docs
        if d["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    ]
    receivers = {
        name: await Receiver(status=500 if name == "failing" else 200).start()
        for name in ("audit", "slack", "failing")
    }
    operator: OperatorProcess | None = None
    try:
        for doc in rbac:
            await kube.apply(codecs.from_dict(doc), field_manager="evictwatch-security-test")
        account = next(d for d in rbac if d["kind"] == "ServiceAccount")["metadata"]["name"]
        username = f"system:serviceaccount:{release_ns}:{account}"
        async with cluster.http() as http:
            reply = await http.post(
                f"/api/v1/namespaces/{release_ns}/serviceaccounts/{account}/token",
                json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
            )
        reply.raise_for_status()
        token = str(reply.json()["status"]["token"])

        secret = {
            "service account token": token,
            "record key": "rk-" + secrets.token_hex(16),
            "http HMAC key": "hm-" + secrets.token_hex(16),
            "http URL token": "ut-" + secrets.token_hex(16),
            "http header": "hd-" + secrets.token_hex(16),
            "Slack URL": "T0"
            + secrets.token_hex(4)
            + "/B0"
            + secrets.token_hex(4)
            + "/"
            + secrets.token_hex(12),
            "broken Slack URL": "T9"
            + secrets.token_hex(4)
            + "/B9"
            + secrets.token_hex(4)
            + "/"
            + secrets.token_hex(12),
            "failing URL token": "ft-" + secrets.token_hex(16),
        }
        env = {
            "EVICTWATCH_RECORD_KEY": secret["record key"],
            "HOOK_URL": f"{receivers['audit'].url}?token={secret['http URL token']}",
            "HOOK_HMAC": secret["http HMAC key"],
            "FAIL_URL": f"{receivers['failing'].url}/{secret['failing URL token']}",
            "SLACK_URL": f"http://127.0.0.1:{receivers['slack'].port}/services/{secret['Slack URL']}",
            "SLACK_BROKEN_URL": f"http://127.0.0.1:{free_port()}/services/{secret['broken Slack URL']}",
            "HANDLER_OUT": str(folder / "handler.jsonl"),
        }
        (folder / "handlers.py").write_text(HANDLER)
        certs = webhook_certificates(folder / "tls")
        config: Doc = yaml.safe_load(next(d for d in docs if d["kind"] == "ConfigMap")["data"]["config.yaml"])
        only_here = {"namespaces": [namespace]}
        config.update(
            logFormat="json",
            logLevel="DEBUG",
            capture=only_here,
            # The chart's own watcher settings (doors off, as it ships), every classic watcher on.
            watchers={**config.get("watchers", {}), "enabled": True, "pods": True, "events": True},
        )
        config["webhook"].update(host="127.0.0.1", configurationName=release, **certs.webhook_settings())
        config["controller"] = {
            "blockedAfterSeconds": 3,
            "retention": {"maxPerNamespace": 7, "intervalSeconds": 1},
            "leaderElection": {"leaseDurationSeconds": 6, "renewSeconds": 2},
        }
        quick = {"backoffSeconds": 0.2, "maxAttempts": 2, "filter": only_here}
        config["sinks"] = {
            "events": {"onOwner": True},
            "log": {},
            "metrics": {},
            "http": [
                {
                    "name": "audit",
                    "urlEnv": "HOOK_URL",
                    "hmacSecretEnv": "HOOK_HMAC",
                    "headers": {"Authorization": f"Bearer {secret['http header']}"},
                    "filter": only_here,
                    "backoffSeconds": 0.2,
                },
                {"name": "failing", "urlEnv": "FAIL_URL", **quick},
            ],
            "slack": [
                {"name": "ops", "urlEnv": "SLACK_URL", "filter": only_here, "backoffSeconds": 0.2},
                {"name": "broken", "urlEnv": "SLACK_BROKEN_URL", **quick},
            ],
            "handlers": {"maxAttempts": 2, "backoffSeconds": 0.2},
        }
        operator = OperatorProcess(
            config,
            folder / "op",
            control_plane.kubeconfig_for_token(token, user=release),
            name=f"{release}-0",
            env=env,
            handler_files=[folder / "handlers.py"],
        )
        await operator.start()
        settings = parse_config(config).webhook
        url = f"https://127.0.0.1:{operator.webhook_port}{settings.path}"
        await cluster.register_webhook(
            registration.webhook_configuration(
                settings, registration.url_client_config(url, certs.ca.cert_pem)
            )
        )

        # The workload: a Pod of every owner kind, a PDB that blocks, a Pod that does not exist,
        # a kubelet eviction (Pod status) and a kubelet Event.
        node = unique("fake-node")
        await cluster.create_node(node, labels={"evictwatch.io/test-node": node})
        expected = await workload(cluster, node)
        for pod in expected:
            status = (await cluster.evict(pod)).status
            assert status == (429 if expected[pod] == "Blocked" else 201), (pod, status)
        assert (await cluster.evict("ghost")).status == 404
        expected["ghost"] = "PodGone"
        await cluster.create_pod("hungry", node=node, ready=True)
        pressure = "The node was low on resource: memory. Threshold quantity: 100Mi, available: 20Mi. "
        await kube.patch(
            Pod.Status,
            "hungry",
            {"status": {"phase": "Failed", "reason": "Evicted", "message": pressure}},
            namespace=namespace,
        )
        expected["hungry"] = "EvictedByKubelet"
        evented = await cluster.create_pod("evented", node=node, ready=True)
        assert evented.metadata is not None
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "evented.kubelet", "namespace": namespace},
            "involvedObject": {
                "kind": "Pod",
                "name": "evented",
                "namespace": namespace,
                "uid": evented.metadata.uid,
            },
            "reason": "Evicted",
            "type": "Warning",
            "message": pressure,
            "source": {"component": "kubelet", "host": node},
            "count": 1,
        }
        await kube.create(codecs.from_dict(event))
        # An Event is evidence, never a source (SECURITY.md): the record comes from the Pod's status,
        # and the kubelet's Event explains it.
        await kube.patch(
            Pod.Status,
            "evented",
            {"status": {"phase": "Failed", "reason": "Evicted", "message": pressure}},
            namespace=namespace,
        )
        expected["evented"] = "EvictedByKubelet"
        assert len(expected) == 7  # = retention.maxPerNamespace: nothing is removed yet

        delivered_to = ("metrics", "log", "events", "http:audit", "slack:ops", "handler:remember")

        async def all_done() -> list[Doc] | None:
            found = [item.to_dict() async for item in kube.list(PodEviction, namespace=namespace)]
            outcomes = {r["spec"]["pod"]["name"]: (r.get("status") or {}).get("outcome") for r in found}
            if outcomes != expected:
                return None
            for record in found:
                deliveries = record["status"].get("deliveries") or {}
                states = {sink: (deliveries.get(sink) or {}).get("state") for sink in deliveries}
                if any(states.get(sink) != "Delivered" for sink in delivered_to):
                    return None
                if states.get("http:failing") != "Failed" or states.get("slack:broken") != "Failed":
                    return None
            return found

        found = await wait_for(all_done, timeout=120, interval=1.0, what="every record settled and delivered")

        # A restart (the Lease released and taken again), then the drain's next try at the
        # blocked Pod: a repeat attempt at a record this process has not seen is merged by
        # read-modify-write.
        await operator.restart()
        blocked = next(pod for pod, outcome in expected.items() if outcome == "Blocked")
        assert (await cluster.evict(blocked)).status == 429

        async def merged() -> bool:
            found = await all_done() or []
            return any(
                r["spec"]["pod"]["name"] == blocked and r["status"].get("observedAttempts") == 2
                for r in found
            )

        await wait_for(merged, timeout=60, what="the second attempt merged and settled")
        found = await all_done() or []

        # Retention: two more evictions make 8 records of real Pods > 7; the oldest goes. The
        # record of the missing Pod (one per requester, whatever it asks for) does not count.
        for extra in ("extra-2", "extra-3"):
            await cluster.create_pod(extra)
            assert (await cluster.evict(extra)).status == 201
        assert (await cluster.evict("ghost-2")).status == 404  # counted in the missing-Pod record

        async def trimmed() -> bool:
            return len([item async for item in kube.list(PodEviction, namespace=namespace)]) == 8

        await wait_for(trimmed, timeout=30, what="retention to remove one record")
        metrics = await operator.metrics_text()
        await operator.stop()  # a clean exit: the Lease is released

        records = [item.to_dict() async for item in kube.list(PodEviction, namespace=namespace)]
        events = [e.to_dict() for ns in (namespace, release_ns) async for e in _events(kube, ns)]
        texts = {
            "operator output": operator.output(),
            "records": json.dumps(found + records, default=str),
            "events": json.dumps(events, default=str),
            "metrics": metrics,
            "handler calls": (folder / "handler.jsonl").read_text(),
            "HTTP sink bodies": "\n".join(r.body.decode() for r in receivers["audit"].requests),
            "Slack bodies": "\n".join(r.body.decode() for r in receivers["slack"].requests),
        }
        granted = set()
        lease_namespaces = set()
        for doc in rbac:
            if doc["kind"] in ("ClusterRole", "Role"):
                granted |= permissions(doc["rules"])
            if doc["kind"] == "Role":
                lease_namespaces.add(doc["metadata"]["namespace"])
        yield Scenario(
            username=username,
            namespace=namespace,
            release_namespace=release_ns,
            granted=granted,
            lease_namespaces=lease_namespaces,
            audit=audit_events(control_plane, username),
            secrets=secret,
            texts=texts,
            figures={
                "records": len(found),
                "outcomes": expected,
                "Events": len(events),
                "log lines": len(operator.stderr().splitlines()),
            },
        )
    finally:
        if operator is not None:
            await operator.stop()
        for receiver in receivers.values():
            await receiver.stop()
        await cluster.cleanup()
        for doc in rbac:
            kind = {"ClusterRole": ClusterRole, "ClusterRoleBinding": ClusterRoleBinding}.get(doc["kind"])
            if kind is not None:
                with contextlib.suppress(ApiError):
                    await kube.delete(kind, doc["metadata"]["name"])
        for ns in (namespace, release_ns):
            await kube.delete(Namespace, ns)


async def _events(kube: AsyncClient, namespace: str) -> AsyncIterator[Event]:
    async for event in kube.list(Event, namespace=namespace):
        yield event


def test_no_secret_in_logs_records_events_metrics_or_deliveries(scenario: Scenario) -> None:
    assert len(scenario.texts["operator output"]) > 10_000, "the operator said next to nothing"
    leaks = [
        f"the {name} in the {where}"
        for name, value in scenario.secrets.items()
        for where, text in scenario.texts.items()
        if value in text
    ]
    assert leaks == [], leaks
    # Even a recognisable piece of the token (its signature part) is absent.
    signature = scenario.secrets["service account token"].rsplit(".", 1)[-1]
    assert all(signature[:16] not in text for text in scenario.texts.values())
    print(
        f"\nsecrets: {len(scenario.secrets)} secrets searched for in {len(scenario.texts)} places "
        f"({sum(len(t) for t in scenario.texts.values()) // 1024} KiB, DEBUG logging): none found; "
        f"scenario {scenario.figures}"
    )


def test_every_call_is_granted_and_every_grant_is_used(scenario: Scenario) -> None:
    resource_calls = [event for event in scenario.audit if "objectRef" in event]
    assert resource_calls, "no API call by the operator in the audit log"
    counts: dict[tuple[str, str, str], int] = {}
    for event in resource_calls:
        counts[call(event)] = counts.get(call(event), 0) + 1
    table = "\n".join(
        f"  {g or 'core'}/{r} {v}: {n}{'' if (g, r, v) in scenario.granted else '  (NOT GRANTED)'}"
        for (g, r, v), n in sorted(counts.items())
    )
    print(f"\nAPI calls by {scenario.username} ({len(resource_calls)} in all):\n{table}")
    used = set(counts)
    forbidden = sorted({call(e) for e in resource_calls if e["responseStatus"].get("code") == 403})
    assert forbidden == [], f"refused calls: {forbidden}"
    assert used - scenario.granted == set(), f"used but not granted: {sorted(used - scenario.granted)}"
    # Used only when the watch-fed records cache is behind: the merge then reads the record and
    # replaces it (records/store.py ``_merge``); with the cache current, a retry is one patch.
    fallback_only = {("evictwatch.io", "podevictions", "get"), ("evictwatch.io", "podevictions", "update")}
    unused = scenario.granted - used - fallback_only
    assert unused == set(), f"granted but never used: {sorted(unused)}"
    leases = {
        e["objectRef"].get("namespace") for e in resource_calls if e["objectRef"]["resource"] == "leases"
    }
    assert leases == scenario.lease_namespaces
    other = sorted({e["requestURI"] for e in scenario.audit if "objectRef" not in e})
    assert other == [], f"non-resource requests: {other}"


# ---- forged records ------------------------------------------------------------------------------
async def test_forged_records_by_an_allowed_user_trigger_nothing(
    control_plane: ControlPlane, cluster: Cluster, tmp_path: Path
) -> None:
    ns = cluster.namespace
    hook, slack = await Receiver().start(), await Receiver().start()
    (tmp_path / "handlers.py").write_text(HANDLER)
    handler_out = tmp_path / "handler.jsonl"
    only_here = {"namespaces": [ns]}
    config = {
        "logFormat": "json",
        "webhook": {"host": "127.0.0.1", "configurationName": unique("ew-forged")},
        "self": {"namespace": ns},
        "capture": only_here,
        "controller": {"leaderElection": {"leaseDurationSeconds": 6, "renewSeconds": 2}},
        "sinks": {
            "http": [{"name": "audit", "url": hook.url, "filter": only_here}],
            "slack": [{"name": "ops", "url": slack.url, "filter": only_here}],
        },
    }
    operator = OperatorProcess(
        config,
        tmp_path / "op",
        control_plane.kubeconfig_path,
        self_signed=True,
        env={
            "EVICTWATCH_RECORD_KEY": "forgery-test-" + secrets.token_hex(8),
            "HANDLER_OUT": str(handler_out),
        },
        handler_files=[tmp_path / "handlers.py"],
    )
    try:
        await operator.start()
        # mallory may create and read PodEvictions in this namespace, and nothing else.
        rules = [
            {
                "apiGroups": ["evictwatch.io"],
                "resources": ["podevictions"],
                "verbs": ["create", "get", "list"],
            }
        ]
        await cluster.client.create(
            from_manifest(Role, {"metadata": {"name": "mallory", "namespace": ns}, "rules": rules})
        )
        await cluster.client.create(
            from_manifest(
                RoleBinding,
                {
                    "metadata": {"name": "mallory", "namespace": ns},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "mallory"},
                    "subjects": [
                        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mallory"}
                    ],
                },
            )
        )

        # A genuine eviction first: its record's signature is what mallory will try to reuse.
        await cluster.create_pod("real")
        assert (await cluster.evict("real")).status == 201
        genuine = await _settled(cluster.client, ns, "real")
        stolen = genuine["metadata"]["annotations"]["evictwatch.io/signature"]

        def forged(name: str, pod: str, signature: str) -> Doc:
            return {
                "apiVersion": "evictwatch.io/v1alpha1",
                "kind": "PodEviction",
                "metadata": {
                    "name": name,
                    "namespace": ns,
                    "annotations": {"evictwatch.io/signature": signature},
                },
                "spec": {
                    "pod": {"name": pod, "found": False},
                    "source": "EvictionAPI",
                    "requester": {"username": "system:serviceaccount:kube-system:cluster-autoscaler"},
                    "attempts": 1,
                    "firstAttemptTime": genuine["spec"]["firstAttemptTime"],
                    "lastAttemptTime": genuine["spec"]["lastAttemptTime"],
                },
                # Ignored on create (status is a subresource), tried anyway.
                "status": {"outcome": "Evicted", "deliveries": {}},
            }

        attempts = {
            "made-up signature": forged("payroll.00000001", "payroll", "0" * 64),
            "stolen signature": forged("payroll.00000002", "payroll", stolen),
            "no signature": forged("payroll.00000003", "payroll", ""),
        }
        async with cluster.http(impersonate="mallory") as http:
            for what, body in attempts.items():
                reply = await http.post(
                    f"/apis/evictwatch.io/v1alpha1/namespaces/{ns}/podevictions", json=body
                )
                assert reply.status_code == 201, (what, reply.text)
            # mallory cannot settle her record by writing its status herself.
            current = (
                await http.get(f"/apis/evictwatch.io/v1alpha1/namespaces/{ns}/podevictions/payroll.00000001")
            ).json()
            current["status"] = {"outcome": "Evicted"}
            reply = await http.put(
                f"/apis/evictwatch.io/v1alpha1/namespaces/{ns}/podevictions/payroll.00000001/status",
                json=current,
            )
            assert reply.status_code == 403, reply.text

        # A genuine eviction after the forgeries is delivered: the controller was running and saw them.
        await cluster.create_pod("after")
        assert (await cluster.evict("after")).status == 201
        await _settled(cluster.client, ns, "after")
        await asyncio.sleep(2.0)
        bodies = json.dumps([r.json() for r in hook.requests + slack.requests])
        handled = handler_out.read_text()
        assert "payroll" not in bodies and "payroll" not in handled
        assert len(hook.requests) == len(slack.requests) == 2
        assert len(handled.splitlines()) == 2
        for name in ("payroll.00000001", "payroll.00000002", "payroll.00000003"):
            record = (await cluster.client.get(PodEviction, name, namespace=ns)).to_dict()
            assert (record.get("status") or {}).get("outcome") == "Pending", record.get("status")
        events = [e async for e in cluster.client.list(Event, namespace=ns) if "payroll" in (e.message or "")]
        assert events == []
        warnings = [
            line
            for line in operator.log_lines()
            if "signature does not check out" in line.get("message", "")
            and "payroll" in line.get("message", "")
        ]
        assert len(warnings) == 3, warnings  # each forgery noted once, not once per look
        print(f"\nforged records: {len(attempts)} created as mallory, 0 notifications, 0 Events, 3 warnings")
    finally:
        await operator.stop()
        await hook.stop()
        await slack.stop()


async def _settled(kube: AsyncClient, namespace: str, pod: str) -> Doc:
    async def probe() -> Doc | None:
        async for item in kube.list(PodEviction, namespace=namespace):
            record: Doc = item.to_dict()
            deliveries = (record.get("status") or {}).get("deliveries") or {}
            if record["spec"]["pod"]["name"] == pod and all(
                (deliveries.get(s) or {}).get("state") == "Delivered"
                for s in ("http:audit", "slack:ops", "handler:remember")
            ):
                return record
        return None

    return await wait_for(probe, timeout=30, what=f"the record of {pod} delivered")
