"""``realtime bench --engine torch,openvino``: inference engines and precisions side by side.

Every row is the same classifier (:func:`realtime.models.create_classifier`, as ``run`` builds
it) with another ``engine`` and ``dtype``, classifying the same windows at batch 1. The rows run
interleaved (window 1 on every row, then window 2 ...), so a busy spell of the machine falls on
all of them alike. Reported per row: ms per window (p50, p90), the speed-up over torch float32
(always measured as the first row), the largest probability difference from it and how many
windows keep its top-1 label.

Windows come from ``clip`` (real frames, prepared as the pipeline prepares them) or, without
one, from synthetic frames; probability differences only mean something on real frames.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from realtime.core.errors import ConfigError
from realtime.core.preprocess import prepare_frame
from realtime.core.types import ENGINES
from realtime.models import ClipClassifier, create_classifier
from realtime.tools.bench import saved_model
from realtime.tools.bench_measure import synthetic_frames
from realtime.tools.clip_windows import read_windows

logger = logging.getLogger(__name__)

SCHEMA = "realtime.tools.engine_bench/1"
BASELINE = ("torch", "float32")


def parse_rows(engines: str, precisions: Optional[str]) -> list[tuple[str, str]]:
    """``"torch,openvino"`` x ``"float32,bfloat16,int8"`` -> rows, torch float32 first."""
    names = [e.strip() for e in engines.split(",") if e.strip()]
    bad = [e for e in names if e not in ENGINES[1:]]
    if not names or bad:
        raise ConfigError(f"--engine {engines!r}: expected a comma-separated list of {', '.join(ENGINES[1:])}")
    if precisions is None:
        from realtime.accel.device import cpu_bf16
        dtypes = ["float32", "bfloat16"] if cpu_bf16()[0] else ["float32"]
    else:
        dtypes = [p.strip() for p in precisions.split(",") if p.strip()]
        bad = [p for p in dtypes if p not in ("float32", "bfloat16", "int8")]
        if not dtypes or bad:
            raise ConfigError(f"--precision {precisions!r}: expected a comma-separated list of float32, "
                              "bfloat16, int8")
    # int8 is OpenVINO's only (a model made by `realtime models quantize`)
    rows = [BASELINE] + [(e, d) for e in names for d in dtypes if d != "int8" or e == "openvino"]
    return list(dict.fromkeys(rows))


def bench_windows(clf: ClipClassifier, clip: Optional[str], count: int) -> np.ndarray:
    """``count`` windows (count, T, H, W, 3) for ``clf``: from ``clip`` spread over its length
    (frames sampled as the pipeline samples them), or synthetic."""
    t = int(clf.num_frames)
    if clip is not None:
        windows = read_windows(clip, clf.input_spec, t, clf.window_seconds, count)
        return np.concatenate([windows] * -(-count // len(windows)))[:count]
    frames = [prepare_frame(f, clf.input_spec) for f in synthetic_frames(t + count, 640, 360)]
    return np.stack([np.stack(frames[i:i + t]) for i in range(count)])


def run_engine_bench(model: str, rows: Sequence[tuple[str, str]], *, clip: Optional[str] = None,
                     windows: int = 8, warmup: int = 1) -> dict[str, Any]:
    """Time ``rows`` of (engine, dtype) on ``windows`` windows each, interleaved; see the module."""
    if windows < 1:
        raise ConfigError(f"--repeats must be >= 1, got {windows}")
    import torch

    with tempfile.TemporaryDirectory(prefix="realtime-bench-") as tmp:
        name = saved_model(model, Path(tmp))
        loaded: list[tuple[tuple[str, str], ClipClassifier, float]] = []
        for engine, dtype in rows:
            clf = create_classifier(name, device="cpu", dtype=dtype, engine=engine)
            started = time.perf_counter()
            clf.load()
            loaded.append(((engine, dtype), clf, time.perf_counter() - started))
            ran = getattr(clf, "engine", engine)
            if ran != engine:
                raise ConfigError(f"{model} did not run on {engine} (it fell back to {ran}); see the warning above")
        batch = bench_windows(loaded[0][1], clip, windows)
        for _, clf, _ in loaded:
            for _ in range(warmup):
                clf.predict(batch[:1])
        times: dict[tuple[str, str], list[float]] = {key: [] for key, _, _ in loaded}
        probs: dict[tuple[str, str], list[np.ndarray]] = {key: [] for key, _, _ in loaded}
        for i in range(windows):
            for key, clf, _ in loaded:
                started = time.perf_counter()
                p = clf.predict(batch[i:i + 1])
                times[key].append((time.perf_counter() - started) * 1000)
                probs[key].append(p[0])
    base = np.stack(probs[BASELINE])
    base_ms = float(np.median(times[BASELINE]))
    results = []
    for key, clf, load_s in loaded:
        p = np.stack(probs[key])
        ms = np.asarray(times[key])
        results.append({
            "engine": key[0], "dtype": key[1], "ms_p50": float(np.median(ms)),
            "ms_p90": float(np.percentile(ms, 90)), "speedup": base_ms / float(np.median(ms)),
            "max_prob_diff": float(np.abs(p - base).max()),
            "top1_same": int((p.argmax(1) == base.argmax(1)).sum()), "load_s": load_s,
        })
    return {"schema": SCHEMA, "model": model, "clip": clip, "windows": windows, "batch": 1,
            "num_frames": int(loaded[0][1].num_frames), "threads": torch.get_num_threads(),
            "device": "cpu", "rows": results}


def format_engine_table(result: dict[str, Any]) -> str:
    source = result["clip"] or "synthetic frames (probability differences mean little)"
    lines = [f"{result['model']}: {result['num_frames']}-frame windows at batch 1, {result['windows']} windows "
             f"from {source}, {result['threads']} threads, interleaved",
             f"{'engine':<10} {'dtype':<9} {'ms p50':>8} {'ms p90':>8} {'x torch fp32':>13} "
             f"{'max |dp|':>9} {'top-1 same':>11} {'load s':>7}"]
    for r in result["rows"]:
        lines.append(f"{r['engine']:<10} {r['dtype']:<9} {r['ms_p50']:>8.1f} {r['ms_p90']:>8.1f} "
                     f"{r['speedup']:>12.2f}x {r['max_prob_diff']:>9.4f} "
                     f"{r['top1_same']:>5}/{result['windows']:<5} {r['load_s']:>7.1f}")
    return "\n".join(lines)
