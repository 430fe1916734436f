"""End to end on real video: four activities in one stream, paced in real time, I3D, ZeroMQ feed,
and a subscriber in a separate process that must see every activity announced, in order."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from conftest import REPO, SHARED_CLIPS, i3d_weights_or_skip
from support.joined import join_clips
from support.rtsp import free_port

ACTIVITIES = [("abseiling.mp4", "abseiling"), ("arm_wrestling.mp4", "arm wrestling"),
              ("flipping_pancake.mkv", "flipping pancake"),
              ("shooting_basketball.avi", "shooting basketball")]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED_CLIPS.is_dir(), reason=f"real clips not found at {SHARED_CLIPS}"),
]


def changes_per_minute(labels: list[str], seconds: float) -> float:
    return sum(1 for a, b in zip(labels, labels[1:]) if a != b) * 60.0 / seconds


def test_subscriber_sees_every_activity_in_order(tmp_path):
    i3d_weights_or_skip()
    video = tmp_path / "four_activities.mp4"
    segments = join_clips([SHARED_CLIPS / name for name, _ in ACTIVITIES], video)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    listener = subprocess.Popen([sys.executable, "-m", "realtime", "listen", "--json", "--endpoint",
                                 endpoint, "--topic", "change.", "--topic", "status."],
                                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    ended = threading.Event()

    def read_feed() -> None:              # until the listener exits; "ended" is the last event
        for line in listener.stdout:
            lines.append(line)
            if '"ended"' in line:
                ended.set()

    reader = threading.Thread(target=read_feed, daemon=True)
    reader.start()
    out = tmp_path / "events.jsonl"
    try:
        run = subprocess.run([sys.executable, "-m", "realtime", "run", "--source", str(video),
                              "--model", "i3d-kinetics400", "--sink", f"zmq:{endpoint}",
                              "--sink", f"jsonl:{out}", "--set", "events.heartbeat_seconds=0"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        assert ended.wait(10), "the listener never received the stream's end"
    finally:
        listener.send_signal(signal.SIGINT)
        try:
            listener.wait(timeout=10)
        except subprocess.TimeoutExpired:
            listener.kill()
            listener.wait()
        reader.join(5)
    stdout, stderr = "".join(lines), listener.stderr.read()
    received = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    changes = [e for e in received if e["type"] == "change"]
    assert any(e["type"] == "status" and e["state"] == "ended" for e in received)
    events = [json.loads(x) for x in out.read_text().splitlines()]
    preds = [e for e in events if e["type"] == "prediction"]
    labels = [c["label"] for c in changes]
    expected = [label for _, label in ACTIVITIES]
    # The four activities are announced in order, whatever the machine's speed ...
    it = iter(labels)
    assert all(any(label == x for x in it) for label in expected), (labels, stderr)
    # ... and any other change names something the reference I3D also sees in a clip on screen
    # at that moment. Exactly one change per activity is not a claim this footage supports: the
    # reference gives the abseiling clip "rock climbing" at 0.29, and whether the smoothed label
    # dips there for a second depends on which windows the machine's speed lets through.
    reference = json.loads((SHARED_CLIPS / "reference_i3d.json").read_text())["clips"]
    plausible = [{label} | {name for name, p in reference[clip]["center_64"]["top5"] if p >= 0.05}
                 for clip, label in ACTIVITIES]
    span = max(p["media_end"] - p["media_start"] for p in preds)
    for change in changes:
        on_screen = set().union(*(plausible[i] for i, (a, b) in enumerate(segments)
                                  if a < change["media_end"] and b > change["media_end"] - span))
        assert change["label"] in on_screen, (change["label"], change["media_end"], labels)
    assert len(labels) <= 2 * len(expected), labels
    gaps = sorted(b["media_end"] - a["media_end"] for a, b in zip(preds, preds[1:]))

    # Figures for the record: switch latency (segment boundary -> change event, in video time)
    # and flicker with smoothing on (the change events) and off (each window's raw top label).
    changes = [next(c for c in changes if c["label"] == label) for label in expected]
    duration = segments[-1][1]
    latencies = [round(c["media_end"] - start, 2) for c, (start, _) in zip(changes[1:], segments[1:])]
    summary = {
        "segments": [[round(a, 2), round(b, 2)] for a, b in segments],
        "change_at": [c["media_end"] for c in changes],
        "switch_latency_s": latencies,
        "changes_per_minute_smoothed": round((len(labels) - 1) * 60.0 / duration, 2),
        "window_interval_s_p50": round(gaps[len(gaps) // 2], 2),
        "changes_per_minute_raw": round(changes_per_minute([p["raw_top_k"][0]["label"] for p in preds],
                                                           duration), 2),
        "windows": len(preds),
        "latency_ms_p50": sorted(p["latency_ms"] for p in preds)[len(preds) // 2],
    }
    print("\nfeed summary:", json.dumps(summary))
    assert all(0 < x < 5.0 for x in latencies), summary
    assert summary["changes_per_minute_smoothed"] < summary["changes_per_minute_raw"], summary
