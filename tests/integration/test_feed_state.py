"""State on join: a ZeroMQ subscriber that joins a running pipeline mid-run gets the current state of
every stream at once (the feed's state endpoint), then the live events; ``realtime listen`` shows
the state first."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from conftest import REPO, realtime, write_video
from realtime.feed.subscriber import Subscriber, subscribe
from support.rtsp import free_port

LOW_BAR = ["--set", "smoothing.enter=0.1", "--set", "smoothing.exit=0.05", "--set", "smoothing.min_dwell_seconds=0.2"]


def test_a_late_subscriber_gets_every_streams_state_within_100_ms(tiny_model, tmp_path):
    videos = [write_video(tmp_path / f"cam{i}.mp4", frames=90, size=(64, 48),
                          color_of=lambda k, i=i: ((k * 37 + 90 * i) % 256, (k * 11) % 256, 200 - 60 * i))
              for i in range(2)]
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    run = subprocess.Popen([sys.executable, "-m", "realtime", "run", "--source", str(videos[0]), "--source",
                            str(videos[1]), "--model", str(tiny_model), "--device", "cpu", "--sink", f"zmq:{endpoint}",
                            "--set", "source.loop=true", *LOW_BAR], cwd=REPO, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # wait until both streams have a stable label, as a subscriber that was there would know
        with Subscriber(endpoint, ("change.",)) as watcher:
            seen: set[str] = set()
            deadline = time.monotonic() + 90
            while len(seen) < 2 and time.monotonic() < deadline:
                item = watcher.recv(1.0)
                if item is not None:
                    seen.add(item[1]["stream"])
            assert len(seen) == 2, run.stderr.read() if run.poll() is not None else "no change on both streams"

        started = time.monotonic()
        with Subscriber(endpoint, ("change.", "prediction.")) as late:     # joins now
            states = late.state(timeout=1.0)
            took = time.monotonic() - started
            assert states is not None and set(states) == seen, states
            assert took < 0.1, f"state took {took * 1000:.0f} ms"
            for name, state in states.items():
                assert state["stream"] == name and state["label"] and state["since"] <= time.time()
                assert state["stream_state"] == "connected" and isinstance(state["seq"], int)
            # then the live events, none older than the snapshot
            item = late.recv(10.0)
            assert item is not None and item[1]["seq"] > states[item[1]["stream"]]["seq"]

        # realtime.feed.subscribe offers it; realtime listen prints it first
        first = next(subscribe(endpoint, ("change.",), timeout=5.0, with_state=True))
        assert first[0].startswith("state.") and first[1]["type"] == "state"
        r = realtime("listen", "--endpoint", endpoint, "--json", "--count", "1", "--timeout", "20")
        lines = [json.loads(line) for line in r.stdout.splitlines()]
        assert r.returncode == 0, r.stderr
        assert [d["type"] for d in lines[:2]] == ["state", "state"] and len(lines) == 3
        assert {d["stream"] for d in lines[:2]} == seen
    finally:
        run.send_signal(signal.SIGINT)
        try:
            run.wait(30)
        except subprocess.TimeoutExpired:
            run.kill()
    assert run.returncode == 0
