"""Classify a whole video file: one label for the clip, optionally a per-window timeline.

Reuses the streaming pipeline with the file paced ``fast`` (every window, none
skipped) and averages the windows' class probabilities.
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from realtime.config import Config, build_config
from realtime.core.errors import SourceError
from realtime.stream.inference import top_k as best_k
from realtime.models import ClipClassifier
from realtime.core.types import Prediction

log = logging.getLogger(__name__)


@dataclass
class ClipResult:
    file: str
    model: str
    labels: list[str]
    windows: list[Prediction] = field(default_factory=list)
    mean_probs: Optional[np.ndarray] = None
    frames: int = 0
    min_score: float = 0.0      # below this the best label is only a guess (smoothing.enter)
    window_probs: Optional[np.ndarray] = None   # (windows, labels), with keep_probs=True

    @property
    def uncertain(self) -> bool:
        """The best label's mean probability is below ``min_score``: the activity may be none
        the model knows, as the live path's uncertain state says."""
        return self.top_k(1)[0]["score"] < self.min_score

    def top_k(self, k: int) -> list[dict[str, Any]]:
        assert self.mean_probs is not None
        return [{"label": s.label, "score": round(s.score, 6)}
                for s in best_k(self.mean_probs, self.labels, k)]

    def to_json(self, k: int, timeline: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.file, "model": self.model, "top_k": self.top_k(k),
                               "label": self.top_k(1)[0]["label"], "uncertain": self.uncertain,
                               "min_score": self.min_score, "windows": len(self.windows),
                               "frames": self.frames}
        if timeline:
            out["timeline"] = [{"start": w.media_start, "end": w.media_end, "label": w.label,
                                "score": round(w.score, 6), "uncertain": w.score < self.min_score}
                               for w in self.windows]
        return out


def classify_file(path: str, config: Config, classifier: Optional[ClipClassifier] = None,
                  stride: Optional[float] = None, progress: bool = True, keep_probs: bool = False) -> ClipResult:
    """Classify a whole video file: every window at the stride, probabilities averaged.

    Args:
        path: the video file.
        config: the settings (model, window, smoothing.enter as the "uncertain" threshold);
            its source and sinks are replaced (the file, read as fast as the model goes).
        classifier: a loaded or unloaded classifier to use instead of ``config.model``.
        stride: seconds between windows (default: ``config.window.stride_seconds``).
        progress: show a progress bar with an ETA on stderr.
        keep_probs: also keep every window's probabilities (``window_probs``).

    Returns:
        A :class:`ClipResult`: the model's labels, each window's :class:`Prediction`, the mean
        probabilities (``top(k)``, ``uncertain``) and the frames read. Raises SourceError for
        a file that cannot be read, ModelError for a model that cannot be loaded.
    """
    from realtime.stream.pipeline import Pipeline

    data = config.model_dump(mode="json")
    data["source"].update({"uri": path, "pace": "fast", "loop": False})
    data["sinks"] = []
    if stride is not None:
        data["window"]["stride_seconds"] = stride
    cfg = build_config(data, "classify")
    lock = threading.Lock()
    preds: list[Prediction] = []
    kept: list[np.ndarray] = []
    total: Optional[np.ndarray] = None

    def collect(pred: Prediction, probs: np.ndarray) -> None:
        nonlocal total
        with lock:
            preds.append(pred)
            if keep_probs:
                kept.append(np.asarray(probs, np.float32))
            total = probs.astype(np.float64) if total is None else total + probs

    pipeline = Pipeline(cfg, classifier=classifier, on_prediction=collect)
    pipeline.start()
    try:
        _wait_with_progress(pipeline, path, progress)
    finally:
        pipeline.stop()
    err = pipeline.error()
    if err is not None:
        raise err
    if not preds or total is None:
        raise SourceError(f"no window could be classified in {path}")
    assert pipeline.classifier is not None
    result = ClipResult(path, pipeline.classifier.name, list(pipeline.classifier.labels), preds,
                        (total / len(preds)).astype(np.float32),
                        pipeline.streams[0].capture.stats.frames, min_score=cfg.smoothing.enter,
                        window_probs=np.stack(kept) if keep_probs else None)
    return result


def _wait_with_progress(pipeline: Any, path: str, progress: bool) -> None:
    stream = pipeline.streams[0]
    bar = None
    if progress and sys.stderr.isatty():
        from tqdm import tqdm
        bar = tqdm(total=None, unit="frame", desc=path if len(path) < 40 else "..." + path[-37:],
                   leave=False)
    try:
        done = False
        while not done:
            done = pipeline.wait(0.2)
            if bar is not None:
                if bar.total is None:
                    # The capture thread opens the file: its frame count (and so an ETA) comes then.
                    bar.total = getattr(stream.source, "frame_count", None)
                    if bar.total is not None:
                        bar.refresh()      # show n/total at once, even when the file is done soon
                bar.update(stream.capture.stats.frames - bar.n)
    finally:
        if bar is not None:
            bar.close()
