"""JSON Lines sink: one JSON object per event, to a file (appended) or stdout."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, Mapping, Optional, TextIO

from realtime.core.errors import SinkError
from realtime.core.events import wire

log = logging.getLogger(__name__)


class JsonlSink:
    def __init__(self, path: str = "-") -> None:
        self.path = path
        self.name = f"jsonl:{path}"
        self._out: Optional[TextIO] = None
        self._owns = False

    def open(self) -> None:
        if self.path == "-":
            self._out = sys.stdout
            return
        target = Path(self.path)
        try:
            if not target.parent.exists():
                # Made for the user, and said so: a mistyped folder shows at once.
                target.parent.mkdir(parents=True)
                log.info("jsonl: created the folder %s for %s", target.parent, target.name)
            self._out = target.open("a", encoding="utf-8")
        except OSError as exc:
            raise SinkError(f"cannot write JSON lines to {self.path}: {exc.strerror}") from None
        self._owns = True

    def write(self, event: Mapping[str, Any]) -> None:
        assert self._out is not None, "open() first"
        self._out.write(json.dumps(wire(event), ensure_ascii=False, separators=(",", ":")) + "\n")
        self._out.flush()

    def close(self) -> None:
        out, self._out = self._out, None
        if out is None:
            return
        try:
            out.flush()
        finally:
            if self._owns:
                try:
                    out.close()
                except OSError:
                    pass            # the flush above already failed for the same reason
