"""The API server's refusals as exceptions of ours, one class per reason that callers act on.

Every call through :class:`evictwatch.kube.api.JsonApi` raises :class:`ApiError` (or a subclass)
for a 4xx/5xx answer, decoded from the ``Status`` the server sends; an answer that is not a
Status (a proxy's plain 404 page) still becomes an ``ApiError`` with its HTTP code. Callers
catch ``NotFound``, ``Conflict`` and the like, or ask :func:`status_code`; nothing above this
layer sees the HTTP library's own errors. A call that got no answer at all raises
``ConnectionError``.
"""

from __future__ import annotations

import json
from typing import Any


class ApiError(Exception):
    """A 4xx/5xx answer: ``code`` is the HTTP status, ``reason`` and ``status`` the server's Status."""

    def __init__(
        self, code: int, message: str, *, reason: str = "", status: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.status: dict[str, Any] = status or {}


class BadRequest(ApiError):
    """400: the request is malformed."""


class Unauthorized(ApiError):
    """401: the credentials are missing, expired or rotated."""


class Forbidden(ApiError):
    """403: RBAC (or an admission plugin, such as a namespace being deleted) refused."""


class NotFound(ApiError):
    """404: no such object, or no such resource (a CRD that is not installed)."""


class Conflict(ApiError):
    """409: the object exists already, or its resourceVersion moved on."""


class Gone(ApiError):
    """410: a watch or list resumed from a version that fell out of the server's window."""


class Invalid(ApiError):
    """422: the object fails validation (a name the server will never accept)."""


class TooManyRequests(ApiError):
    """429: throttled, or an eviction refused by a PodDisruptionBudget."""


class ServerError(ApiError):
    """5xx: the server failed; the same call may succeed later."""


_BY_CODE: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
    429: TooManyRequests,
}


def error_for(code: int, content: bytes, where: str) -> ApiError:
    """The exception for an answer with HTTP status ``code`` and body ``content``."""
    status: dict[str, Any] = {}
    try:
        decoded = json.loads(content)
        if isinstance(decoded, dict) and decoded.get("kind") == "Status":
            status = decoded
    except ValueError:
        pass
    message = str(status.get("message") or content.decode("utf-8", "replace").strip()[:200] or where)
    kind = _BY_CODE.get(code) or (ServerError if code >= 500 else ApiError)
    return kind(code, message, reason=str(status.get("reason") or ""), status=status)


def status_code(error: BaseException) -> int | None:
    """The HTTP status of an API error, or None for anything else (no answer, a bug)."""
    if isinstance(error, ApiError):
        return error.code
    return None


RETRYABLE_4XX = frozenset({401, 403, 404, 408, 409, 429})
"""Client errors that say nothing about the object: credentials or RBAC (may be fixed), a CRD
being re-installed or a namespace going (404), a timeout, a conflict, throttling."""


def is_permanent(error: BaseException) -> bool:
    """A write the API server refused for the object itself (400, 413, 422, ...): sending the same
    object again can only be refused again, so the caller counts it lost and moves on rather than
    retry (and, in a watch, replay it forever in front of every later event)."""
    code = status_code(error)
    return code is not None and 400 <= code < 500 and code not in RETRYABLE_4XX
