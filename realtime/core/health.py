"""Per-stream rates and latencies for heartbeat events (thread-safe counters, no I/O)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np


@dataclass
class _Window:
    started: float
    frames_at_start: int
    predictions: int = 0
    latencies: list[float] = field(default_factory=list)


class HealthMonitor:
    """Counts predictions and latencies per stream between two heartbeats."""

    def __init__(self, period: float) -> None:
        self.period = period
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}
        self._started = time.monotonic()
        self._last_beat = self._started

    def record(self, stream: str, latency_ms: float) -> None:
        with self._lock:
            # A stream's first counting window starts where the frame count starts: at the last
            # beat (the pipeline's start), not at its first prediction.
            w = self._windows.setdefault(stream, _Window(self._last_beat, 0))
            w.predictions += 1
            if len(w.latencies) < 10_000:
                w.latencies.append(latency_ms)

    def due(self, now: Optional[float] = None) -> bool:
        now = time.monotonic() if now is None else now
        return self.period > 0 and now - self._last_beat >= self.period

    def beat(self, stream: str, frames_total: int, now: Optional[float] = None) -> dict[str, Any]:
        """Fields of a heartbeat for ``stream``, and start a new counting window for it."""
        now = time.monotonic() if now is None else now
        with self._lock:
            w = self._windows.get(stream) or _Window(self._last_beat, 0)
            self._windows[stream] = _Window(now, frames_total)
        elapsed = max(1e-6, now - w.started)
        lat = np.asarray(w.latencies) if w.latencies else None
        return {
            "uptime": round(now - self._started, 3),
            "interval": round(elapsed, 3),
            "fps": round(max(0, frames_total - w.frames_at_start) / elapsed, 3),
            "predictions_per_second": round(w.predictions / elapsed, 3),
            "latency_ms_p50": None if lat is None else round(float(np.percentile(lat, 50)), 2),
            "latency_ms_max": None if lat is None else round(float(lat.max()), 2),
        }

    def mark_beat(self, now: Optional[float] = None) -> None:
        self._last_beat = time.monotonic() if now is None else now
