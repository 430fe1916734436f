"""Bad input gets one line and the documented exit code, never a traceback: a config file that is
not UTF-8, a broken IPv6 URL, an absurd timeout, a missing file (reported before the model loads),
a sink that fails throughout (exit 3), a truncated file (said to have ended early).

Real parts: the command line in its own process, /dev/full, an H.264 mp4 cut in half by bytes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import realtime, write_video


def one_error_line(r: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, r.stderr
    return errors[0]


def test_a_config_file_that_is_not_utf8(tmp_path):
    config = tmp_path / "latin1.yaml"
    config.write_bytes("run:\n  log_level: info\n# caf\xe9\n".encode("latin-1"))
    r = realtime("run", "--config", str(config), "--print-config", timeout=60)
    assert r.returncode == 2
    assert one_error_line(r) == (f"realtime: error: config file {config} is not UTF-8 text: byte 0xe9 "
                                 f"on line 3 (save it as UTF-8)")


def test_a_broken_ipv6_url_fails_before_the_model_loads():
    r = realtime("run", "--source", "rtsp://[::1:bad/s", "--model", "i3d-kinetics400", timeout=60)
    assert r.returncode == 1
    assert one_error_line(r).startswith("realtime: error: cannot open rtsp://[::1:bad/s: the URL names "
                                        "no host")
    assert "loading model" not in r.stderr


def test_a_missing_file_fails_before_the_model_loads(tmp_path):
    r = realtime("run", "--source", str(tmp_path / "nope.mp4"), "--model", "i3d-kinetics400", timeout=60)
    assert r.returncode == 1
    assert one_error_line(r) == f"realtime: error: video file not found: {tmp_path / 'nope.mp4'}"
    assert "loading model" not in r.stderr


@pytest.mark.parametrize("key", ["source.open_timeout", "source.read_timeout"])
def test_an_absurd_timeout_is_a_configuration_error(key):
    r = realtime("run", "--source", "rtsp://cam/s", "--set", f"{key}=1e308", "--print-config", timeout=60)
    assert r.returncode == 2
    assert "less than or equal to 3600" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_sink_that_failed_throughout_exits_3(tiny_model, tmp_path):
    clip = write_video(tmp_path / "clip.mp4", frames=45, fps=30.0, size=(160, 120))
    r = realtime("run", "--source", str(clip), "--model", str(tiny_model), "--set", "source.pace=fast",
                 "--sink", "jsonl:/dev/full", timeout=120)
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("realtime: error: sink jsonl:/dev/full failed to write ") and \
        "No space left on device" in last, last


def test_a_truncated_file_is_said_to_have_ended_early(tiny_model, tmp_path):
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (scripts/setup.sh installs it)")
    whole, cut = tmp_path / "whole.mp4", tmp_path / "cut.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=30",
                    "-frames:v", "180", "-c:v", "libx264", "-preset", "ultrafast",
                    "-movflags", "+faststart", str(whole)], check=True, timeout=60)
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])            # the index is at the front: it lists 180
    out = tmp_path / "events.jsonl"
    r = realtime("run", "--source", str(cut), "--model", str(tiny_model), "--set", "source.pace=fast",
                 "--sink", f"jsonl:{out}", timeout=120)
    assert r.returncode == 0, r.stderr
    ended = [e for e in map(json.loads, out.read_text().splitlines())
             if e["type"] == "status" and e["state"] == "ended"]
    assert len(ended) == 1
    detail = ended[0]["detail"]
    read = ended[0]["counters"]["frames"]
    assert 40 < read < 150
    assert detail == (f"{read} frames read; {cut} ended early: {read} of the 180 frames its header "
                      f"lists could be read (the file is truncated or damaged)")
    assert f"{cut} ended early" in r.stderr                     # said on the terminal too
    whole_run = realtime("run", "--source", str(whole), "--model", str(tiny_model), "--set",
                         "source.pace=fast", timeout=120)
    assert whole_run.returncode == 0 and "ended early" not in whole_run.stderr
