"""Many live streams through the real pipeline: does every stream get its windows, and how old
is the newest frame of each classified window? (``realtime bench --streams N``)

Each stream is a :class:`SyntheticCamera`: a live source delivering pre-made frames at a fixed
rate, as a camera would (reading blocks until the next frame is due), so the frames cost nothing
to make and the measurement is of capture, preprocessing, batching and the model.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from realtime.config import load_config
from realtime.core.errors import SourceError
from realtime.sources import SourceInfo


class SyntheticCamera:
    """A live FrameSource cycling through ``frames`` at ``fps`` (no I/O, no decoding)."""

    def __init__(self, name: str, frames: list[np.ndarray], fps: float) -> None:
        self.info = SourceInfo("camera", name, name)
        self.frames = frames
        self._fps = fps
        self._next = 0.0
        self._i = 0
        self._open = False

    @property
    def fps(self) -> float:
        return self._fps

    def open(self) -> None:
        self._open = True
        self._next = time.monotonic()

    def read(self) -> tuple[np.ndarray, None]:
        if not self._open:
            raise SourceError(f"{self.info.name} is not open")
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)   # a camera's read blocks until the next frame exists
        self._next = max(self._next + 1.0 / self._fps, time.monotonic() - 1.0 / self._fps)
        frame = self.frames[self._i % len(self.frames)]
        self._i += 1
        return frame, None

    def close(self) -> None:
        self._open = False


def _classifier(model: str, device: str, workdir: Path, sdpa_backend: str = "auto", engine: str = "auto") -> Any:
    from realtime.models import create_classifier
    from realtime.tools.bench import saved_model
    return create_classifier(saved_model(model, workdir), device=device, sdpa_backend=sdpa_backend, engine=engine)


def run_stream_bench(model: str, device: str, streams: int, seconds: float, fps: float,
                     frame_size: tuple[int, int], stride: float, max_batch: int,
                     max_wait_ms: float = 0.0, preprocess: str = "auto",
                     sampled_frames_only: bool = True, sdpa_backend: str = "auto",
                     engine: str = "auto") -> dict[str, Any]:
    """Run ``streams`` synthetic live cameras for ``seconds``; per-stream rates and frame ages."""
    from realtime.tools.bench_measure import synthetic_frames
    from realtime.stream.pipeline import Pipeline

    width, height = frame_size
    frames = synthetic_frames(8, width, height)
    cams = [SyntheticCamera(f"synthetic{i}", frames, fps) for i in range(streams)]
    ages: dict[str, list[float]] = {}
    lock = threading.Lock()

    def on_event(event: dict[str, Any]) -> None:
        if event["type"] == "prediction":
            with lock:
                ages.setdefault(event["stream"], []).append(event["latency_ms"])

    with tempfile.TemporaryDirectory(prefix="realtime-bench-") as tmp:
        clf = _classifier(model, device, Path(tmp), sdpa_backend, engine)
        cfg = load_config(None, ["sinks=[]", "run.log_level=warning", f"window.stride_seconds={stride}",
                                 f"inference.max_batch={max_batch}", f"inference.max_wait_ms={max_wait_ms}",
                                 f"inference.preprocess={preprocess}", "events.heartbeat_seconds=0",
                                 f"window.sampled_frames_only={str(sampled_frames_only).lower()}"])
        pipeline = Pipeline(cfg, classifier=clf, sources=cams, on_event=on_event)
        pipeline.start()
        warm = max(3.0, 1.5 * pipeline.streams[0].slot.spec.window_seconds)
        try:
            time.sleep(warm)                       # the first windows need a full window of frames
            with lock:
                for v in ages.values():
                    v.clear()
            worker = pipeline.inference
            assert worker is not None
            cpu0 = _thread_cpu(pipeline)
            phases0 = dict(worker.phase_seconds)
            windows0 = worker.windows
            t0 = time.monotonic()
            pipeline.stop_event.wait(seconds)
            elapsed = time.monotonic() - t0
            cpu1 = _thread_cpu(pipeline)
            phases = {k: v - phases0[k] for k, v in worker.phase_seconds.items()}
            frames_read = sum(s.capture.stats.frames for s in pipeline.streams)
            delivered = sum(s.capture.stats.delivered for s in pipeline.streams)
            windows = worker.windows - windows0
        finally:
            pipeline.stop()
        names = [s.name for s in pipeline.streams]
    with lock:
        rates = {n: len(ages.get(n, [])) / elapsed for n in names}
        all_ages = np.array([a for v in ages.values() for a in v]) if ages else np.zeros(0)
    target = 1.0 / stride
    return {
        "model": model, "device": str(clf.device), "engine": getattr(clf, "engine", "torch"),
        "precision": str(getattr(clf, "dtype", "")).removeprefix("torch."), "streams": streams, "fps": fps,
        "frame_size": [width, height], "stride_seconds": stride, "max_batch": max_batch, "max_wait_ms": max_wait_ms,
        "sampled_frames_only": sampled_frames_only, "sdpa_backend": sdpa_backend,
        "frames_prepared": round(delivered / max(1, frames_read), 3),
        "seconds": round(elapsed, 2),
        "windows_per_second_total": round(sum(rates.values()), 2),
        "windows_per_second_per_stream": {"target": round(target, 3),
                                          "min": round(min(rates.values()), 3),
                                          "max": round(max(rates.values()), 3)},
        "starved_streams": sum(1 for r in rates.values() if r < 0.5 * target),
        "newest_frame_age_ms": {
            "p50": round(float(np.percentile(all_ages, 50)), 1) if all_ages.size else None,
            "p99": round(float(np.percentile(all_ages, 99)), 1) if all_ages.size else None,
            "max": round(float(all_ages.max()), 1) if all_ages.size else None},
        "batches": worker.batches,
        "mean_batch": round(worker.windows / worker.batches, 2) if worker.batches else None,
        # Where the inference thread's time went, per window classified, and how busy it was.
        "inference_ms_per_window": {k: round(v * 1e3 / max(1, windows), 3) for k, v in phases.items()},
        "inference_busy": round(sum(phases.values()) / elapsed, 3),
        # CPU cores' worth of time each kind of thread used (all capture threads together).
        "cpu_cores": {kind: round((cpu1[kind] - cpu0[kind]) / elapsed, 3)
                      for kind in cpu0 if cpu0[kind] is not None and cpu1[kind] is not None},
    }


def _thread_cpu(pipeline: Any) -> dict[str, Optional[float]]:
    """CPU seconds used so far by all capture threads together, by the inference thread, and by
    the whole process (None where unknown)."""
    captures = [s.capture.cpu_seconds() for s in pipeline.streams]
    inference = pipeline.inference.cpu_seconds() if pipeline.inference else None
    return {"capture": None if any(c is None for c in captures) else sum(captures),   # type: ignore[misc]
            "inference": inference, "process": time.process_time()}


def format_stream_result(r: dict[str, Any]) -> str:
    age = r["newest_frame_age_ms"]
    rate = r["windows_per_second_per_stream"]
    return "\n".join([
        f"{r['streams']} streams x {r['fps']:g} fps {r['frame_size'][0]}x{r['frame_size'][1]}, "
        f"model {r['model']} on {r['device']} ({r.get('engine', 'torch')}, {r.get('precision', '?')}), "
        f"{r['seconds']} s; max batch {r['max_batch']}, max wait "
        f"{r.get('max_wait_ms', 0):g} ms, {'sampled frames' if r['sampled_frames_only'] else 'every frame'}",
        f"  windows/s: {r['windows_per_second_total']} total; per stream min {rate['min']} "
        f"max {rate['max']} (target {rate['target']}); starved streams: {r['starved_streams']}",
        f"  newest-frame age when classified: p50 {age['p50']} ms, p99 {age['p99']} ms, "
        f"max {age['max']} ms; mean batch {r['mean_batch']}",
        "  inference thread per window: " + ", ".join(
            f"{k} {v:.2f} ms" for k, v in r["inference_ms_per_window"].items())
        + f"; busy {100 * r['inference_busy']:.0f}% of the time",
        "  CPU cores used: " + ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_cores"].items())
        + f"; {100 * r['frames_prepared']:.0f}% of frames prepared",
    ])
