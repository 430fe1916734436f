import io
import json
import subprocess
import sys
import threading

import pytest

from realtime.config import load_config
from realtime.core.errors import ConfigError, SinkError
from realtime.sinks import DropOldestQueue, SinkRunner, build_sink, parse_sink_spec
from realtime.sinks.console import ConsoleSink
from realtime.sinks.jsonl import JsonlSink


def pred(label, seq=0, stream="s"):
    return {"type": "prediction", "stream": stream, "seq": seq, "label": label, "score": 0.5,
            "latency_ms": 12.0}


class ListSink:
    def __init__(self):
        self.name = "list"
        self.events = []
        self.closed = False
        self.got = threading.Event()

    def open(self):
        pass

    def write(self, e):
        self.events.append(e)
        self.got.set()

    def close(self):
        self.closed = True


class FailingSink(ListSink):
    def write(self, e):
        raise OSError("disk full")


class HangingSink(ListSink):
    def __init__(self):
        super().__init__()
        self.release = threading.Event()

    def write(self, e):
        self.release.wait(10)


def test_queue_drops_oldest_and_counts():
    q = DropOldestQueue(3)
    for i in range(5):
        q.put(i)
    assert q.dropped == 2 and len(q) == 3
    assert [q.get(0.1)[1] for _ in range(3)] == [2, 3, 4]
    assert q.get(0.01) == (False, None)
    q.close()
    q.put(9)                       # ignored once closed
    assert q.closed_and_empty


def test_failing_and_hanging_sinks_do_not_stall_the_others():
    good, bad, stuck = ListSink(), FailingSink(), HangingSink()
    runners = [SinkRunner(s, queue_size=4) for s in (bad, stuck, good)]
    for r in runners:
        r.start()
    try:
        for i in range(50):
            for r in runners:
                r.offer(pred("x", i))  # never blocks, whatever the sinks do
        assert runners[2].close(2.0)
        seqs = [e["seq"] for e in good.events]
        assert seqs == sorted(seqs) and seqs[-1] == 49          # in order, newest delivered
        assert len(seqs) + runners[2].dropped == 50
        assert runners[1].dropped >= 40                          # the hung sink's queue stays bounded
        assert runners[0].close(2.0)                             # the failing one drains too ...
        assert runners[0].errors >= 1 and "disk full" in runners[0].last_error   # ... counting errors
    finally:
        stuck.release.set()
        for r in runners:
            r.close(2.0)


def test_a_sink_that_never_returns_does_not_keep_the_process_alive():
    """close() gives up after its timeout; the runner's thread must not block interpreter exit."""
    code = (
        "import threading, time\n"
        "from realtime.sinks import SinkRunner\n"
        "class Stuck:\n"
        "    name = 'stuck'\n"
        "    def open(self): pass\n"
        "    def write(self, e): threading.Event().wait()\n"
        "    def close(self): pass\n"
        "r = SinkRunner(Stuck())\n"
        "r.start(); r.offer({'type': 'x'}); time.sleep(0.2)\n"
        "print('finished' if r.close(0.2) else 'abandoned')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0 and run.stdout.strip() == "abandoned", run.stderr


def test_close_delivers_everything_queued():
    sink = ListSink()
    r = SinkRunner(sink, queue_size=1000)
    r.start()
    for i in range(500):
        r.offer(pred("x", i))
    assert r.close(5.0)
    assert len(sink.events) == 500 and sink.closed


def test_console_prints_changes_and_status_by_default():
    out = io.StringIO()
    sink = ConsoleSink(stream=out)
    sink.open()
    for label in ["run", "jump"]:
        sink.write(pred(label))                          # predictions: not printed by default
        sink.write({"type": "change", "stream": "s", "label": label, "score": 0.8,
                    "previous": "walk", "previous_duration": 2.5})
    sink.write({"type": "heartbeat", "stream": "s", "fps": 30.0})
    sink.write({"type": "status", "stream": "s", "state": "lost", "source": "rtsp://***@h/x",
                "detail": "timeout"})
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0] == "[s] -> run (0.80)  (after walk, 2.5 s)"
    assert "lost rtsp://***@h/x: timeout" in lines[2]


def test_console_every_prediction():
    out = io.StringIO()
    sink = ConsoleSink(every="prediction", stream=out)
    sink.open()
    for label in ["run", "run", "jump"]:
        sink.write(pred(label))
    assert [l.split()[1] for l in out.getvalue().splitlines()] == ["run", "run", "jump"]


def test_jsonl_appends_one_object_per_line(tmp_path):
    path = tmp_path / "sub" / "events.jsonl"
    for _ in range(2):
        sink = JsonlSink(str(path))
        sink.open()
        sink.write(pred("ünïcode"))
        sink.close()
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    assert [l["label"] for l in lines] == ["ünïcode", "ünïcode"]


def test_jsonl_unwritable_path_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SinkError, match=str(blocker)):
        JsonlSink(str(blocker / "x.jsonl")).open()


def test_sink_specs():
    assert parse_sink_spec("console") == {"type": "console"}
    assert parse_sink_spec("jsonl:out/e.jsonl") == {"type": "jsonl", "path": "out/e.jsonl"}
    assert parse_sink_spec("jsonl") == {"type": "jsonl"}
    with pytest.raises(ConfigError, match="unknown sink 'fax'.*console"):
        parse_sink_spec("fax:1")
    with pytest.raises(ConfigError, match="takes no argument"):
        parse_sink_spec("console:x")


def test_build_sinks_from_config():
    cfg = load_config(None, ["sinks=[{type: jsonl, path: '-'}, {type: console, every: prediction}]"])
    sinks = [build_sink(c) for c in cfg.sinks]
    assert isinstance(sinks[0], JsonlSink) and sinks[0].path == "-"
    assert isinstance(sinks[1], ConsoleSink) and sinks[1].every == "prediction"
