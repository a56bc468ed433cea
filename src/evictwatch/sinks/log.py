"""One JSON line per settled eviction, on stdout (or stderr), for log pipelines."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import TextIO

from ..model.notice import Eviction
from .base import SinkBase


@dataclass
class LogSink(SinkBase):
    stream_name: str = "stdout"

    def _stream(self) -> TextIO:
        return sys.stdout if self.stream_name == "stdout" else sys.stderr

    async def deliver(self, eviction: Eviction) -> None:
        line = json.dumps({"event": "eviction", **eviction.to_json()}, separators=(",", ":"), sort_keys=True)
        stream = self._stream()
        stream.write(line + "\n")
        stream.flush()
