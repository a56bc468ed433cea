"""Structured logging: one line per event, as JSON when asked, with the Pod's namespace/name.

Callers pass context with ``extra={"namespace": ..., "pod": ...}``; the JSON formatter puts
every such field at the top level, so a log pipeline can filter on them.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """Human lines that still carry namespace/pod when a record has them."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        namespace, pod = getattr(record, "namespace", None), getattr(record, "pod", None)
        if namespace and pod and f"{namespace}/{pod}" not in line:
            line += f" [{namespace}/{pod}]"
        return line


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx2", "httpcore", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
