"""``realtime models quantize``: an INT8 OpenVINO model from a folder of the user's clips.

Calibration windows are spread evenly over every video in the folder (sub-folders too, hidden
ones skipped), ``windows`` in all. A second set of windows, half a spacing away from the first
(other frames of the same clips), then measures what INT8 costs: how many keep the float32
model's top-1 label, the largest probability difference, and the time per window of both.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from realtime.core.errors import ConfigError, ModelError
from realtime.core.preprocess import normalize
from realtime.models import create_classifier
from realtime.tools.clip_windows import read_windows
from realtime.tools.clipfolders import VIDEO_EXTENSIONS, is_hidden, is_video_file

logger = logging.getLogger(__name__)

DEFAULT_WINDOWS = 32
"""Calibration windows by default: NNCF's statistics settle within a few dozen windows for these
models, and 32 windows of 32 frames hold 150 MB of frames."""
CHECK_WINDOWS = 16


def calibration_clips(folder: str | Path) -> list[Path]:
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ConfigError(f"--calibration {folder}: not a folder")
    clips = sorted(p for p in root.rglob("*") if is_video_file(p) and not is_hidden(p, root))
    if not clips:
        raise ConfigError(f"--calibration {folder}: no video files in it "
                          f"(looked for {', '.join(sorted(VIDEO_EXTENSIONS))})")
    return clips


def _windows(clips: list[Path], clf: Any, count: int, offset: float, desc: str, progress: bool) -> np.ndarray:
    from tqdm import tqdm

    per_clip = max(1, math.ceil(count / len(clips)))
    found = []
    for clip in tqdm(clips, desc=desc, unit="clip", file=sys.stderr, disable=None if progress else True):
        try:
            found.append(read_windows(clip, clf.input_spec, clf.num_frames, clf.window_seconds, per_clip, offset))
        except Exception as exc:   # one unreadable clip must not end the job; say which and why
            logger.warning("skipping %s: %s", clip, exc)
    if not found:
        raise ConfigError("no calibration clip could be read")
    windows = np.concatenate(found)
    pick = np.linspace(0, len(windows) - 1, min(count, len(windows))).round().astype(int)
    return windows[pick]


def _timed_probs(clf: Any, windows: np.ndarray) -> tuple[np.ndarray, float]:
    times, probs = [], []
    for w in windows:
        started = time.perf_counter()
        probs.append(clf.predict(w[None])[0])
        times.append((time.perf_counter() - started) * 1000)
    return np.stack(probs), float(np.median(times))


def quantize_model(name: str, calibration: str | Path, *, windows: int = DEFAULT_WINDOWS,
                   num_frames: Optional[int] = None, progress: bool = True) -> dict[str, Any]:
    """Quantise model ``name`` from the clips in ``calibration``; returns the report (see module)."""
    from realtime.accel.openvino_int8 import quantize

    if windows < 1:
        raise ConfigError(f"--windows must be >= 1, got {windows}")
    clips = calibration_clips(calibration)
    fp32 = create_classifier(name, device="cpu", dtype="float32", engine="openvino", num_frames=num_frames)
    fp32.load()
    network = getattr(fp32, "network", None)
    if network is None or getattr(fp32, "engine", "") != "openvino":
        raise ModelError(f"{name} cannot be quantised: it does not run on OpenVINO (see the warning above)")
    module, forward, shape = network()
    spec = fp32.input_spec
    calib = _windows(clips, fp32, windows, 0.0, "calibration windows", progress)
    check = _windows(clips, fp32, CHECK_WINDOWS, 0.5, "check windows", progress)

    def to_input(window: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(normalize(window[None], spec).transpose(0, 1, 4, 2, 3))

    started = time.monotonic()
    path = quantize(module, forward, shape, list(calib), to_input, name=name,
                    transformer=hasattr(module, "config"), calibration=str(Path(calibration).resolve()))
    seconds = time.monotonic() - started
    int8 = create_classifier(name, device="cpu", dtype="int8", engine="openvino", num_frames=num_frames)
    int8.load()
    p32, ms32 = _timed_probs(fp32, check)
    p8, ms8 = _timed_probs(int8, check)
    labels = list(fp32.labels)
    changed = [(labels[a], labels[b]) for a, b in zip(p32.argmax(1), p8.argmax(1)) if a != b]
    return {"model": name, "path": str(path), "calibration": str(calibration), "clips": len(clips),
            "calibration_windows": int(len(calib)), "quantize_s": round(seconds, 1),
            "check_windows": int(len(check)), "top1_same": int(len(check) - len(changed)),
            "top1_changed": changed[:5], "max_prob_diff": float(np.abs(p8 - p32).max()),
            "float32_ms": round(ms32, 1), "int8_ms": round(ms8, 1)}


def format_report(r: dict[str, Any]) -> str:
    lines = [f"{r['model']}: INT8 model in {r['path']}",
             f"  calibrated on {r['calibration_windows']} windows of {r['clips']} clips in {r['calibration']} "
             f"({r['quantize_s']} s)",
             f"  checked on {r['check_windows']} other windows of those clips: top-1 as float32 on "
             f"{r['top1_same']}/{r['check_windows']}, largest probability difference {r['max_prob_diff']:.3f}",
             f"  OpenVINO per window: float32 {r['float32_ms']} ms, int8 {r['int8_ms']} ms "
             f"({r['float32_ms'] / max(r['int8_ms'], 1e-9):.2f}x)"]
    for a, b in r["top1_changed"]:
        lines.append(f"  changed: {a} -> {b}")
    lines.append("use it with --set model.precision=int8")
    return "\n".join(lines)
