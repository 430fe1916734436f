"""The command line, as a user runs it: real processes, real files, a tiny real transformers model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, TINY_LABELS as LABELS, realtime, write_video


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("videos") / "clip.mp4", frames=90, fps=30.0,
                       size=(160, 120))


def test_run_file_end_to_end_writes_predictions(tiny_model, video, tmp_path):
    out = tmp_path / "out.jsonl"
    r = realtime("run", "--source", str(video), "--model", str(tiny_model), "--sink", f"jsonl:{out}",
                 "--set", "source.pace=fast", "--set", "window.stride_seconds=0.25")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in out.read_text().splitlines()]
    preds = [e for e in events if e["type"] == "prediction"]
    assert len(preds) >= 3
    for e in preds:
        assert e["raw_top_k"][0]["label"] in LABELS          # labels come from the model's id2label
        assert {"type", "stream", "seq", "window_start", "window_end", "label", "score", "top_k",
                "latency_ms"} <= set(e)
        assert e["window_start"] < e["window_end"] and e["stream"] == "clip"
    ended = [i for i, e in enumerate(events) if e["type"] == "status" and e["state"] == "ended"]
    assert len(ended) == 1                       # the file's end, reported once
    assert [e["seq"] for e in events] == list(range(len(events)))


def test_run_camera_py_takes_the_same_flags(tiny_model, video, tmp_path):
    out = tmp_path / "out.jsonl"
    r = subprocess.run([sys.executable, "run_camera.py", "--source", str(video), "--model",
                        str(tiny_model), "--sink", f"jsonl:{out}", "--set", "source.pace=fast"],
                       capture_output=True, text=True, timeout=120, cwd=REPO,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    assert any(json.loads(x)["type"] == "prediction" for x in out.read_text().splitlines())


def test_sigint_stops_a_live_run_within_2s_and_flushes(tiny_model, video, tmp_path):
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "realtime", "run", "--source", str(video),
                             "--model", str(tiny_model), "--sink", f"jsonl:{out}",
                             "--set", "source.loop=true", "--set", "window.stride_seconds=0.2"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:            # wait until predictions flow
            if out.exists() and out.read_text().count('"prediction"') >= 3:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, proc.stderr.read()
    assert elapsed < 2.0, elapsed
    lines = out.read_text().splitlines()
    events = [json.loads(x) for x in lines]              # every line complete: nothing torn
    assert events[-1]["type"] == "status" and events[-1]["state"] == "ended"


def test_exit_process_runs_atexit_handlers_and_flushes_before_leaving(tmp_path):
    """The CLI skips interpreter teardown (about 1 s with torch loaded), not cleanup or output."""
    marker = tmp_path / "atexit-ran"
    code = ("import atexit, pathlib, sys, torch\n"
            "from realtime.cli.main import exit_process\n"
            f"atexit.register(pathlib.Path({str(marker)!r}).write_text, 'yes')\n"
            "sys.stdout.write('buffered, no newline')\n"
            "exit_process(7)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 7, r.stderr
    assert r.stdout == "buffered, no newline"
    assert marker.read_text() == "yes"


@pytest.mark.parametrize("args,code,needle", [
    (["run", "--set", "source.pase=fast", "--print-config"], 2, "source.pase: unknown key"),
    (["run", "--set", "window.stride_seconds=-1", "--print-config"], 2, "window.stride_seconds"),
    (["run", "--config", "/nonexistent.yaml"], 2, "config file not found: /nonexistent.yaml"),
    (["run", "--sink", "fax", "--print-config"], 2, "unknown sink 'fax'"),
    (["run", "--source", "/nope/missing.mp4", "--model", "MODEL"], 1, "video file not found: /nope/missing.mp4"),
    (["run", "--source", "ftp://u:secret@h/x", "--model", "MODEL"], 1, "unsupported source URL scheme"),
    (["run", "--model", "/nope/model-dir", "--source", "VIDEO"], 1, "/nope/model-dir"),
])
def test_errors_are_one_clear_line(args, code, needle, tiny_model, video):
    args = [str(tiny_model) if a == "MODEL" else str(video) if a == "VIDEO" else a for a in args]
    r = realtime(*args, "--duration", "5") if "--print-config" not in args else realtime(*args)
    assert r.returncode == code, (r.stdout, r.stderr)
    assert needle in r.stderr
    assert "Traceback" not in r.stderr
    assert "secret" not in r.stderr


def test_print_config_shows_the_merged_result(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("window:\n  stride_seconds: 0.3\n")
    r = realtime("run", "--config", str(cfg), "--source", "rtsp://cam/x", "--sink", "jsonl:-",
                 "--set", "inference.top_k=3", "--print-config")
    assert r.returncode == 0, r.stderr
    assert "stride_seconds: 0.3" in r.stdout and "uri: rtsp://cam/x" in r.stdout
    assert "top_k: 3" in r.stdout and "type: jsonl" in r.stdout


def test_classify_marks_a_low_confidence_result_uncertain(tiny_model, video):
    """A random 5-class model is never confident: the result says so instead of naming a label."""
    r = realtime("classify", str(video), "--model", str(tiny_model), "--json", "--timeline")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["uncertain"] is True and doc["min_score"] == 0.4 and doc["top_k"][0]["score"] < 0.4
    assert all(w["uncertain"] for w in doc["timeline"])
    text = realtime("classify", str(video), "--model", str(tiny_model))
    assert f"{video}: uncertain (best guess {doc['label']}: " in text.stdout
    sure = realtime("classify", str(video), "--model", str(tiny_model), "--json",
                    "--set", "smoothing.enter=0.05", "--set", "smoothing.exit=0.05")
    assert json.loads(sure.stdout)["uncertain"] is False


def test_classify_progress_bar_has_a_total_and_an_eta(tiny_model, video):
    """On a terminal (a real pseudo-terminal here) the bar counts frames out of the file's total."""
    import fcntl
    import pty
    import struct
    import termios
    import threading
    main_fd, child_fd = pty.openpty()
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # 120 columns
    chunks: list[bytes] = []

    def drain() -> None:                               # read as it is written: a pty holds little
        while True:
            try:
                data = os.read(main_fd, 65536)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, name="test-pty-reader", daemon=True)
    reader.start()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "realtime", "classify", str(video), "--model",
                                 str(tiny_model), "--set", "window.stride_seconds=0.1"],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=child_fd, text=True,
                                env={**os.environ, "HF_HUB_OFFLINE": "1"})
        os.close(child_fd)
        proc.communicate(timeout=120)
        reader.join(5)
    finally:
        os.close(main_fd)
    bar = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, bar
    assert "/90 [" in bar, bar                         # n/total: the clip's 90 frames
    assert "<" in bar.split("/90 [", 1)[1], bar        # [elapsed<remaining, rate]
