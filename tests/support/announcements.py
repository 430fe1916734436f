"""One run of the accessibility preset on the four reference clips joined into one video, paced in
real time, the speech sink saving WAV files: what was announced, when, and whether it passes
(used by scripts/bench_announcements.py and its test)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from realtime.sinks import build_sink
from realtime.stream.pipeline import Pipeline, make_config

ACTIVITIES = [("abseiling.mp4", "abseiling"), ("arm_wrestling.mp4", "arm wrestling"),
              ("flipping_pancake.mkv", "flipping pancake"), ("shooting_basketball.avi", "shooting basketball")]


def one_run(video: Path, segments: list[tuple[float, float]], settings: dict, max_delay: float) -> dict:
    config = make_config(str(video), config="accessibility", settings=settings)
    data = config.model_dump(mode="json")
    speech_cfg = next(s for s in config.sinks if s.type == "speech")
    with tempfile.TemporaryDirectory() as tmp:
        speech_cfg = speech_cfg.model_copy(update={"speak": False, "save_dir": tmp})
        sink = build_sink(speech_cfg)
        pipeline = Pipeline(config, sinks=[sink])
        pipeline.start()
        started = time.monotonic()
        try:
            pipeline.wait(segments[-1][1] + 30)
        finally:
            pipeline.stop()
        parts = [{"kind": p.kind.value, "label": p.label, "text": p.text,
                  "at": round(p.requested - started, 2)} for p in sink.spoken]
        files = sorted(f.name for f in Path(tmp).glob("*.wav"))
    expected = [label for _, label in ACTIVITIES]
    starts = [p for p in parts if p["kind"] in ("started", "urgent")]
    rows = []
    for (begin, end), label in zip(segments, expected):
        said = next((p for p in starts if p["label"] == label and p["at"] >= begin - 1.0), None)
        ended = any(p["kind"] == "ended" and p["label"] == label and p["at"] >= begin for p in parts)
        rows.append({"label": label, "clip_start": round(begin, 2), "said_at": said and said["at"],
                     "delay": None if said is None else round(said["at"] - begin, 2), "end_said": ended})
    order = [p["label"] for p in starts if p["label"] in expected]
    in_order = [x for i, x in enumerate(order) if i == 0 or order[i - 1] != x] == expected
    ok = in_order and all(r["delay"] is not None and r["delay"] <= max_delay and r["end_said"] for r in rows)
    return {"pass": ok, "in_order": in_order, "activities": rows, "parts": parts, "files": files,
            "smoothing": data["smoothing"]}
