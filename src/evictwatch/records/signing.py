"""Records the controller can trust: an HMAC over the identity of the record.

Anyone allowed to create PodEvictions could otherwise make the operator send a Slack message
or run a handler. Every record our webhook or watchers write carries
``evictwatch.io/signature``: HMAC-SHA256, keyed by a secret only the operator reads, over the
namespace, the name and the whole spec, renewed by the store on every spec write (it is the only
writer of specs). The controller acts only on records whose signature checks out; the rest,
forged or altered by anyone else, are logged once and left alone. What a signature cannot stop
is a replay: a deleted record re-created with its exact old content (see SECURITY.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Mapping
from typing import Any

SIGNATURE_ANNOTATION = "evictwatch.io/signature"
KEY_ENV = "EVICTWATCH_RECORD_KEY"

log = logging.getLogger(__name__)


def load_key(environ: Mapping[str, str] | None = None) -> bytes:
    """The signing key from ``$EVICTWATCH_RECORD_KEY``; a random one (with a warning) when unset."""
    value = (environ if environ is not None else os.environ).get(KEY_ENV, "")
    if value:
        return value.encode()
    log.warning(
        "%s is not set: records are signed with a key of this process only, so other replicas "
        "(and this one after a restart) will not act on them; set it from a Secret",
        KEY_ENV,
    )
    return secrets.token_bytes(32)


def _payload(namespace: str, name: str, spec: Mapping[str, Any]) -> bytes:
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "\n".join((namespace, name, canonical)).encode()


def signature(key: bytes, namespace: str, name: str, spec: Mapping[str, Any]) -> str:
    return hmac.new(key, _payload(namespace, name, spec), hashlib.sha256).hexdigest()


def verify(key: bytes, record: Mapping[str, Any]) -> bool:
    metadata = record.get("metadata") or {}
    given = (metadata.get("annotations") or {}).get(SIGNATURE_ANNOTATION, "")
    expected = signature(
        key, str(metadata.get("namespace", "")), str(metadata.get("name", "")), record.get("spec") or {}
    )
    return bool(given) and hmac.compare_digest(str(given), expected)
