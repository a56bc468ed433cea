"""HTTP: a CloudEvents 1.0 document (structured mode) POSTed to a configured URL.

Each delivery carries an idempotency key (``Idempotency-Key`` header and the CloudEvent
``id``), stable per record and outcome, so a receiver drops the rare repeat that a crash
between "sent" and "recorded as sent" can cause. With a key configured, the body is signed
with HMAC-SHA256 (``X-Evictwatch-Signature: sha256=<hex>``). Errors name the sink and the
HTTP status, never the URL: URLs (Slack's above all) carry secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp

from ..model.notice import Eviction
from ..model.podeviction import record_path
from .base import SinkBase

SIGNATURE_HEADER = "X-Evictwatch-Signature"
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"


class DeliveryError(RuntimeError):
    """A delivery that did not go through; the message is safe to log and store."""


def cloudevent(eviction: Eviction) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": eviction.idempotency_key,
        "source": record_path(eviction.namespace, eviction.record),
        "type": f"io.evictwatch.eviction.{str(eviction.outcome).lower()}",
        "subject": eviction.key,
        "time": eviction.outcome_time or eviction.last_attempt,
        "datacontenttype": "application/json",
        "data": eviction.to_json(),
    }


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


async def post_signed(
    session: aiohttp.ClientSession | None,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    secret: bytes | None,
    timeout: float,
) -> int:
    """POST ``body`` (signed with ``secret`` when given) and read the answer; its HTTP status.

    The HTTP sink and the pre-eviction hooks share it: one way to sign and send. Raises
    aiohttp's errors, or TimeoutError, when there is no answer; ``session`` None: a fresh one.
    """
    sent = dict(headers)
    if secret:
        sent[SIGNATURE_HEADER] = sign(secret, body)
    client = session or aiohttp.ClientSession(trust_env=True)
    try:
        async with client.post(
            url, data=body, headers=sent, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as reply:
            await reply.read()
            return reply.status
    finally:
        if session is None:
            await client.close()


@dataclass
class HttpSink(SinkBase):
    url: str = ""
    timeout: float = 5.0
    secret: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    client: aiohttp.ClientSession | None = None
    """The sinks' one session (a connection pool per receiver); a session of its own when None."""
    deduplicates: ClassVar[bool] = True
    """The Idempotency-Key lets the receiver drop a repeat: an interrupted send is sent again."""
    marks_in_flight: ClassVar[bool] = False
    """No ``Sending`` mark (see controller/inflight.py): a repeat is harmless, a status write is not free."""

    def body(self, eviction: Eviction) -> tuple[bytes, str]:
        return json.dumps(cloudevent(eviction), separators=(",", ":")).encode(), CLOUDEVENTS_CONTENT_TYPE

    async def deliver(self, eviction: Eviction) -> None:
        body, content_type = self.body(eviction)
        headers = {**self.headers, "Content-Type": content_type, "Idempotency-Key": eviction.idempotency_key}
        try:
            status = await post_signed(self.client, self.url, body, headers, self.secret, self.timeout)
        except (aiohttp.ClientError, TimeoutError) as error:
            raise DeliveryError(f"{self.name}: {type(error).__name__}") from None
        if status >= 300:
            raise DeliveryError(f"{self.name}: HTTP {status}")
