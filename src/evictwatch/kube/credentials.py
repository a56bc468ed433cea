"""Who we are to the API server, from any kubeconfig that kubectl accepts, or from the Pod.

lightkube parses the kubeconfig (its ``KubeConfig`` and models: the file format, contexts,
``*-data`` fields); this module turns the chosen user and cluster into what every call needs:
a TLS context (the cluster's CA, the user's client certificate) and an ``Authorization``
header. The header's sources, as client-go has them:

* a static token, or basic auth;
* a token file (in a Pod: the projected service-account token the kubelet rotates), re-read
  once a minute and whenever the server answers 401;
* an exec plugin (``client.authentication.k8s.io``): run, its ``ExecCredential`` cached until
  its ``expirationTimestamp`` (or a 401); a plugin may also hand back a client certificate;
* an ``auth-provider`` only where it already holds an ``id-token`` (the removed gcp/azure
  providers cannot be spoken for; the error says to move to their exec plugins).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import os
import ssl
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightkube.config.kubeconfig import SingleConfig
from lightkube.config.models import FileStr, User

TOKEN_FILE_SECONDS = 60.0
"""How long a token read from a file is used before it is read again (client-go: a minute)."""

EXEC_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")


class CredentialError(RuntimeError):
    """The kubeconfig's user cannot be presented; the message says why and what to do."""


def tls_context(config: SingleConfig) -> ssl.SSLContext | None:
    """The TLS context for the cluster (None for a plain-HTTP server)."""
    if not config.cluster.server.startswith("https"):
        return None
    cluster = config.cluster
    if cluster.certificate_auth:
        context = ssl.create_default_context(cafile=str(config.abs_file(cluster.certificate_auth)))
    elif cluster.certificate_auth_data:
        context = ssl.create_default_context(cafile=FileStr(cluster.certificate_auth_data))
    else:
        context = ssl.create_default_context()
        if cluster.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    user = config.user
    if user is not None and (user.client_cert or user.client_cert_data):
        cert = FileStr(user.client_cert_data) or str(config.abs_file(user.client_cert or ""))
        key = FileStr(user.client_key_data) or str(config.abs_file(user.client_key or ""))
        context.load_cert_chain(cert, key)
    return context


@dataclass
class Credentials:
    """The ``Authorization`` header for each call, kept fresh; share one per process."""

    user: User | None
    context: ssl.SSLContext | None = None
    clock: Any = time.monotonic
    _header: str | None = None
    _expires: float = float("inf")
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def from_config(cls, config: SingleConfig) -> Credentials:
        user = config.user
        if user is not None and user.auth_provider and not _provider_token(user.auth_provider):
            name = str(user.auth_provider.get("name", "")) or "auth-provider"
            raise CredentialError(
                f"the kubeconfig's user uses the '{name}' auth-provider, which Kubernetes clients no "
                "longer support: switch it to the provider's exec plugin (as kubectl requires)"
            )
        return cls(user=user, context=tls_context(config))

    async def header(self) -> str | None:
        """The header value to send now (None: anonymous, or a client certificate alone)."""
        if self._header is not None and self.clock() < self._expires:
            return self._header
        async with self._lock:
            if self._header is None or self.clock() >= self._expires:
                self._header, self._expires = await self._fetch()
        return self._header

    def invalidate(self) -> bool:
        """After a 401: forget what we sent; True if a fresh one may differ (worth one retry)."""
        renewable = self.user is not None and bool(self.user.token_file or self.user.exec)
        if renewable:
            self._header, self._expires = None, 0.0
        return renewable

    async def _fetch(self) -> tuple[str | None, float]:
        user = self.user
        if user is None:
            return None, float("inf")
        if user.token_file:
            token = await asyncio.to_thread(Path(user.token_file).read_text)
            return f"Bearer {token.strip()}", self.clock() + TOKEN_FILE_SECONDS
        if user.token:
            return f"Bearer {user.token}", float("inf")
        if user.exec is not None:
            return await self._run_exec(user)
        if user.username and user.password:
            pair = base64.b64encode(f"{user.username}:{user.password}".encode()).decode()
            return f"Basic {pair}", float("inf")
        if user.auth_provider:
            return f"Bearer {_provider_token(user.auth_provider)}", float("inf")
        return None, float("inf")

    async def _run_exec(self, user: User) -> tuple[str | None, float]:
        plugin = user.exec
        assert plugin is not None
        if plugin.apiVersion not in (*EXEC_VERSIONS, "client.authentication.k8s.io/v1alpha1"):
            raise CredentialError(f"exec plugin apiVersion {plugin.apiVersion} is not supported")
        env = dict(os.environ)
        env.update((item.name, item.value) for item in plugin.env or [])
        env["KUBERNETES_EXEC_INFO"] = json.dumps(
            {"apiVersion": plugin.apiVersion, "kind": "ExecCredential", "spec": {"interactive": False}}
        )
        try:
            process = await asyncio.create_subprocess_exec(
                plugin.command,
                *(plugin.args or []),
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as error:
            hint = f" ({plugin.installHint.strip()})" if plugin.installHint else ""
            raise CredentialError(f"cannot run exec plugin {plugin.command}: {error}{hint}") from None
        out, err = await process.communicate()
        if process.returncode != 0:
            said = err.decode(errors="replace")[:300]
            raise CredentialError(f"exec plugin {plugin.command} exited {process.returncode}: {said}")
        try:
            status = json.loads(out)["status"]
        except (ValueError, KeyError, TypeError) as error:
            raise CredentialError(
                f"exec plugin {plugin.command} printed no ExecCredential: {error}"
            ) from None
        expires = _expiry(status.get("expirationTimestamp"), self.clock())
        if status.get("clientCertificateData") and status.get("clientKeyData") and self.context is not None:
            _load_pair(self.context, status["clientCertificateData"], status["clientKeyData"])
        token = status.get("token")
        return (f"Bearer {token}" if token else None), expires


def _provider_token(provider: dict[str, Any]) -> str:
    settings = provider.get("config") or {}
    return str(settings.get("id-token") or settings.get("access-token") or "")


def _expiry(stamp: object, now: float) -> float:
    """The monotonic time an ExecCredential stops being used: 10 s before it expires."""
    if not isinstance(stamp, str) or not stamp:
        return float("inf")
    try:
        moment = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return float("inf")
    left = (moment - datetime.datetime.now(datetime.UTC)).total_seconds()
    return now + max(left - 10.0, 0.0)


def _load_pair(context: ssl.SSLContext, cert_pem: str, key_pem: str) -> None:
    """A client certificate from an exec plugin, for the connections made from now on."""
    with tempfile.TemporaryDirectory(prefix="evictwatch-exec-") as folder:
        cert, key = Path(folder, "tls.crt"), Path(folder, "tls.key")
        cert.write_text(cert_pem)
        key.touch(mode=0o600)
        key.write_text(key_pem)
        context.load_cert_chain(str(cert), str(key))
