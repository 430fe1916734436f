"""Lag scenario, run in a fresh process so its memory reading is its own:
a 30 fps 720p camera and a classifier taking 500 ms per window.

    python tests/support/lag_scenario.py --seconds 60     # prints one JSON summary line
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # tests/, for support.fakes

from support.fakes import ScriptedClassifier  # noqa: E402
from support.fakes import FakeCamera
from realtime.config import load_config  # noqa: E402
from realtime.stream.pipeline import Pipeline  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--infer", type=float, default=0.5)
    ap.add_argument("--sampled-frames-only", action="store_true", help="window.sampled_frames_only=true")
    args = ap.parse_args()
    cam = FakeCamera(fps=args.fps, size=(720, 1280))
    clf = ScriptedClassifier(num_frames=16, window_seconds=16 * 4 / 30, delay=args.infer, crop=224,
                             keep_calls=1)
    ages, infer, lock = [], [], threading.Lock()

    def on_event(e):
        if e["type"] == "prediction":
            with lock:
                ages.append(e["latency_ms"])
                infer.append(e["inference_ms"])

    overrides = ["sinks=[]", "run.log_level=warning",
                 f"window.sampled_frames_only={str(args.sampled_frames_only).lower()}"]
    p = Pipeline(load_config(None, overrides), classifier=clf,
                 source=cam, on_event=on_event)
    p.start()
    rss = []
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < args.seconds:
            p.stop_event.wait(2.0)
            rss.append((time.monotonic() - t0, rss_mb()))
    finally:
        p.stop()
    a = np.array(ages)
    own = a - np.array(infer)      # what the pipeline adds to the model's own (measured) time
    settled = [m for t, m in rss if t >= 10] or [m for _, m in rss]
    print(json.dumps({
        "seconds": args.seconds, "fps": args.fps, "inference_ms": args.infer * 1000,
        "predictions": len(a), "age_ms_p50": round(float(np.percentile(a, 50)), 1),
        "age_ms_p99": round(float(np.percentile(a, 99)), 1), "age_ms_max": round(float(a.max()), 1),
        "bound_ms": round(args.infer * 1000 + 2000 / args.fps, 1),
        "inference_ms_max": round(float(np.max(infer)), 1),
        "pipeline_ms_p50": round(float(np.percentile(own, 50)), 1),
        "pipeline_ms_p95": round(float(np.percentile(own, 95)), 1),
        "pipeline_ms_max": round(float(own.max()), 1), "pipeline_bound_ms": round(2000 / args.fps, 1),
        # median age over the first and the last quarter of the run: lag that builds up shows here
        "age_ms_first_quarter": round(float(np.median(a[:max(1, len(a) // 4)])), 1),
        "age_ms_last_quarter": round(float(np.median(a[-max(1, len(a) // 4):])), 1),
        "frames_captured": cam.produced,
        "frames_prepared": p.streams[0].capture.stats.delivered, "ring_capacity": p.streams[0].ring.capacity,
        "rss_mb_at_10s": round(settled[0], 1),
        "rss_mb_end": round(settled[-1], 1), "rss_mb_max": round(max(settled), 1),
    }))


if __name__ == "__main__":
    main()
