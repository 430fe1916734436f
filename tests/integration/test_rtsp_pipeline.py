"""The pipeline against a real RTSP server on 127.0.0.1: killed, restarted, hung, resumed."""

from __future__ import annotations

import threading
import time

import pytest

from realtime.config import load_config
from realtime.stream.pipeline import Pipeline

from support.fakes import ScriptedClassifier
from support.rtsp import RtspServer, rtsp_available

pytestmark = pytest.mark.network


@pytest.fixture
def server():
    ok, reason = rtsp_available()
    if not ok:
        pytest.skip(reason)
    with RtspServer(fps=30, width=320, height=240) as srv:
        yield srv


class Recorder:
    """Collects events with their arrival time; waits for a condition with a deadline."""

    def __init__(self):
        self.events: list[tuple[float, dict]] = []
        self.cond = threading.Condition()

    def __call__(self, event):
        with self.cond:
            self.events.append((time.monotonic(), event))
            self.cond.notify_all()

    def wait_for(self, predicate, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self.events), timeout)

    def states(self):
        with self.cond:
            return [(t, e["state"]) for t, e in self.events if e["type"] == "status"]

    def first(self, state, after=0.0):
        return next((t for t, s in self.states() if s == state and t >= after), None)

    def predictions_after(self, t0):
        with self.cond:
            return [e for t, e in self.events if e["type"] == "prediction" and t > t0]


def has_state(state, after=0.0):
    return lambda evs: any(e["type"] == "status" and e["state"] == state and t >= after for t, e in evs)


def has_predictions(n, after=0.0):
    return lambda evs: sum(1 for t, e in evs if e["type"] == "prediction" and t > after) >= n


def start_pipeline(url: str, rec: Recorder, read_timeout: float = 2.0) -> Pipeline:
    cfg = load_config(None, ["sinks=[]", "run.log_level=warning", f"source.uri='{url}'",
                             "source.open_timeout=2", f"source.read_timeout={read_timeout}",
                             "window.stride_seconds=0.25"])
    p = Pipeline(cfg, classifier=ScriptedClassifier(num_frames=8, window_seconds=0.5), on_event=rec)
    p.start()
    return p


def test_survives_server_kill_and_recovers_within_3s_of_its_return(server):
    rec = Recorder()
    p = start_pipeline(server.url, rec)
    try:
        assert rec.wait_for(has_predictions(3), 15), rec.states()
        killed = time.monotonic()
        server.kill()
        assert rec.wait_for(has_state("lost", killed), 5), rec.states()
        assert rec.wait_for(has_state("reconnecting", killed), 5), rec.states()
        time.sleep(2.0)   # the camera stays away for a while (this is the scenario, not a sync)
        assert p.inference.alive and not p.stop_event.is_set()
        server.restart()
        back = time.monotonic()
        assert rec.wait_for(has_state("recovered", back), 3.0), rec.states()
        recovered = rec.first("recovered", back)
        print(f"\nlost {rec.first('lost', killed) - killed:.2f} s after the kill; "
              f"recovered {recovered - back:.2f} s after the server came back")
        assert recovered - back < 3.0
        assert rec.wait_for(has_predictions(2, recovered), 10)
    finally:
        p.stop()
    states = [s for _, s in rec.states()]
    assert states[0] == "connected" and "lost" in states and states[-1] == "ended"
    stats = p.streams[0].capture.stats
    assert stats.reconnects == 1 and stats.gaps == 1


def test_hung_server_is_noticed_within_read_timeout_then_recovered(server):
    rec = Recorder()
    p = start_pipeline(server.url, rec, read_timeout=2.0)
    try:
        assert rec.wait_for(has_predictions(3), 15), rec.states()
        hung = time.monotonic()
        server.pause()                                   # SIGSTOP: sockets open, no data
        assert rec.wait_for(has_state("lost", hung), 2.0 + 1.5), rec.states()
        lost = rec.first("lost", hung)
        print(f"\nhang noticed {lost - hung:.2f} s after SIGSTOP (read timeout 2 s)")
        assert lost - hung <= 2.0 + 1.0                   # read timeout plus a frame or two
        assert rec.wait_for(has_state("reconnecting", hung), 5), rec.states()
        # no prediction is made from stale frames while the server hangs
        before = len(rec.predictions_after(lost + 0.6))
        server.resume()
        resumed = time.monotonic()
        assert rec.wait_for(has_state("recovered", resumed), 2 * 2.0 + 3.0), rec.states()
        print(f"recovered {rec.first('recovered', resumed) - resumed:.2f} s after SIGCONT")
        assert rec.wait_for(has_predictions(2, rec.first("recovered", resumed)), 10)
        assert before == 0
    finally:
        p.stop()
    details = [e["detail"] for _, e in rec.events if e["type"] == "status" and e["state"] == "lost"]
    assert any("within 2 s" in d for d in details), details
