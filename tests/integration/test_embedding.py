"""The README's embedding example, run as written: a real process, the default I3D model, a
synthetic clip, the public names of ``realtime``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from conftest import REPO, i3d_weights_or_skip, write_video


def readme_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Embedding\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the Embedding section has one example"
    return blocks[0]


def test_the_public_names_load_lazily():
    code = ("import sys, realtime; assert 'torch' not in sys.modules and 'realtime.stream.pipeline' not in "
            "sys.modules; from realtime import Pipeline, load_config, make_config, Prediction, "
            "SourceError; assert Pipeline.__module__ == 'realtime.stream.pipeline'; print(sorted(realtime.__all__))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "'Pipeline'" in r.stdout and "'load_config'" in r.stdout


def test_the_readme_embedding_example_runs(tmp_path):
    i3d_weights_or_skip()
    write_video(tmp_path / "clip.mp4", frames=75, fps=25.0, size=(160, 120))
    r = subprocess.run([sys.executable, "-c", readme_example()], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    shown = [line for line in lines if re.fullmatch(r"\s*\d+\.\d\d s  .+ \d\.\d\d", line)]
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    predictions = [e for e in events if e["type"] == "prediction"]
    assert len(shown) == len(predictions) >= 3        # every window reached the callback
    assert "'clip'" in lines[-1] and "'windows'" in lines[-1]   # the stats line
    assert events[-1]["type"] == "status" and events[-1]["state"] == "ended"


def test_leaving_the_with_block_raises_what_failed(tmp_path):
    code = ("from realtime import Pipeline, SourceError\n"
            "try:\n"
            "    with Pipeline.create('rtsp://127.0.0.1:9/none', sinks=[], settings={'source.connect_attempts': 1}) as p:\n"
            "        p.wait(30)\n"
            "except SourceError as exc:\n"
            "    print('raised:', exc)\n")
    i3d_weights_or_skip()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("raised: cannot open rtsp://127.0.0.1:9/none: connection refused"), r.stdout
