"""ZeroMQ feed: the PUB sink, the subscriber helper, the event schema and ``realtime listen``.

Real sockets on 127.0.0.1 with system-chosen ports (``tcp://127.0.0.1:*``).
Subscriptions reach a publisher asynchronously, so every test first publishes
probes until the subscriber sees one (with a deadline) instead of sleeping.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import jsonschema
import pytest
import zmq
import zmq.auth

from realtime.config import load_config
from realtime.core.errors import ConfigError, SinkError
from realtime.core.events import EventFactory, PredictionEvent
from realtime.feed.subscriber import CurveClient, Subscriber, load_schema, subscribe
from realtime.cli.listen import add_parser, cmd_listen, format_line
from realtime.sinks import SinkRunner, build_sink, parse_sink_spec
from realtime.sinks.zmq import ZmqSink, is_local_endpoint
from realtime.core.types import LabelScore, Prediction, StreamStatus

ANY_PORT = "tcp://127.0.0.1:*"
DEADLINE = 10.0


# --------------------------------------------------------------------------- helpers
def make_prediction(stream: str = "camera0", label: str = "push up", t: float = 1_764_090_000.0) -> Prediction:
    return Prediction(stream=stream, window_start=t, window_end=t + 2.13, media_start=None, media_end=None,
                      top_k=(LabelScore(label, 0.91), LabelScore("situp", 0.04), LabelScore("squat", 0.02)),
                      latency_ms=183.2, inference_ms=171.9, frame_indices=(310, 374))


def change_fields(label: str = "situp", previous: Optional[str] = "push up") -> dict[str, Any]:
    return {"label": label, "score": 0.8, "previous": previous, "previous_duration": 12.5 if previous else None,
            "window_start": 1_764_090_010.0, "window_end": 1_764_090_012.1,
            "top_k": [{"label": label, "score": 0.8}, {"label": "push up", "score": 0.1}]}


def heartbeat_fields() -> dict[str, Any]:
    return {"uptime": 61.2, "fps": 29.9, "predictions_per_second": 2.0, "latency_ms_p50": 180.5,
            "latency_ms_max": 240.1, "dropped": {"frames": 3, "windows": 0},
            "sinks": {"zmq:tcp://127.0.0.1:5556": {"written": 120, "dropped": 0, "errors": 0,
                                                   "last_error": None}}}


def open_sink(**kw: Any) -> ZmqSink:
    sink = ZmqSink(kw.pop("endpoint", ANY_PORT), **kw)
    sink.open()
    assert sink.bound_endpoint and not sink.bound_endpoint.endswith(":*")
    return sink


def wait_joined(publish: Callable[[], None], sub: Subscriber, deadline: float = DEADLINE) -> None:
    """Publish probes until ``sub`` receives one, then drain the probes still in flight."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        publish()
        if sub.recv(0.05) is not None:
            while sub.recv(0.1) is not None:
                pass
            return
    pytest.fail(f"subscriber to {sub.endpoint} got nothing within {deadline} s")


def probe(factory: EventFactory, kind: str = "status", stream: str = "probe") -> Callable[[], dict]:
    def make() -> dict:
        if kind == "status":
            return factory.status(StreamStatus(stream, "connected", "probe"))
        if kind == "prediction":
            return factory.prediction(make_prediction(stream))
        return factory.make("change", stream, change_fields())
    return make


def recv_n(sub: Subscriber, n: int, deadline: float = DEADLINE) -> list[tuple[str, dict]]:
    out: list[tuple[str, dict]] = []
    end = time.monotonic() + deadline
    while len(out) < n:
        item = sub.recv(max(0.0, end - time.monotonic()))
        assert item is not None, f"only {len(out)} of {n} messages within {deadline} s"
        out.append(item)
    return out


@pytest.fixture
def validator() -> jsonschema.Draft202012Validator:
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


# --------------------------------------------------------------------------- schema and messages
def test_every_event_type_is_published_with_its_topic_and_validates(validator) -> None:
    factory = EventFactory()
    sink = ZmqSink(ANY_PORT)
    runner = SinkRunner(sink)                    # the real threading: open() here, write() on its thread
    runner.start()
    try:
        with Subscriber(sink.bound_endpoint or "", topics=("",)) as sub:
            wait_joined(lambda: runner.offer(probe(factory)()), sub)
            raw = PredictionEvent({**factory.prediction(make_prediction()).to_json(),   # events are read-only
                                   "raw_top_k": [{"label": "push up", "score": 0.7}, {"label": "situp", "score": 0.2}]})
            events = [
                factory.prediction(make_prediction()),
                raw,
                factory.prediction(Prediction("file", 1.0, 3.1, 0.0, 2.1, (LabelScore("x", 1.0),), 5.0, 4.0, (0, 63))),
                factory.status(StreamStatus("camera0", "lost", "rtsp://***@10.0.0.5/s", "no frame within 5 s",
                                            counters={"frames": 10})),
                factory.status(StreamStatus("camera0", "reconnecting", "rtsp://***@10.0.0.5/s", attempt=2,
                                            retry_in=0.5)),
                factory.make("change", "camera0", change_fields(previous=None)),
                factory.make("change", "camera0", change_fields()),
                factory.make("heartbeat", "camera0", heartbeat_fields()),
                factory.make("heartbeat", "camera1", {**heartbeat_fields(), "fps": None,
                                                      "latency_ms_p50": None, "latency_ms_max": None}),
            ]
            before = time.time()
            for event in events:
                runner.offer(event)
            got = [item for item in recv_n(sub, len(events)) if item[1]["stream"] != "probe"]
            while len(got) < len(events):        # probes offered before the first arrived
                item = recv_n(sub, 1)[0]
                if item[1]["stream"] != "probe":
                    got.append(item)
    finally:
        assert runner.close()
    assert [e for _, e in got] == [{**e, "publish_time": e2["publish_time"]} for e, (_, e2) in zip(events, got)]
    for topic, event in got:
        assert topic == f"{event['type']}.{event['stream']}"
        assert before - 1 <= event["publish_time"] <= time.time() + 1
        errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(event)]
        assert not errors, (topic, errors)
    assert {e["type"] for _, e in got} == {"prediction", "status", "change", "heartbeat"}
    assert sink._sock is None and sink.sent >= len(events) and sink.dropped == 0


@pytest.mark.parametrize("breakage", [
    lambda e: e.pop("label"),
    lambda e: e.update(schema_version=2),
    lambda e: e.update(type="mystery"),
    lambda e: e.update(score=1.5),
    lambda e: e.update(top_k=[]),
    lambda e: e.update(frames=[1]),
    lambda e: e.pop("seq"),
    lambda e: e.update(stream=""),
])
def test_schema_rejects_broken_predictions(validator, breakage) -> None:
    event = EventFactory().prediction(make_prediction()).to_json()    # the wire form
    assert validator.is_valid(event)
    breakage(event)
    assert not validator.is_valid(event)


def test_schema_checks_each_type_for_its_own_fields(validator) -> None:
    f = EventFactory()
    status = f.status(StreamStatus("s", "connected", "camera:0")).to_json()
    assert validator.is_valid(status)
    assert not validator.is_valid({**status, "state": "sleeping"})
    assert not validator.is_valid({k: v for k, v in status.items() if k != "counters"})
    change = f.make("change", "s", change_fields())
    assert not validator.is_valid({k: v for k, v in change.items() if k != "previous_duration"})
    heartbeat = f.make("heartbeat", "s", heartbeat_fields())
    assert not validator.is_valid({k: v for k, v in heartbeat.items() if k != "sinks"})
    assert not validator.is_valid({**heartbeat, "dropped": 3})


# --------------------------------------------------------------------------- topics and joining
def test_subscribers_filter_by_topic_prefix() -> None:
    factory = EventFactory()
    sink = open_sink()
    endpoint = sink.bound_endpoint or ""
    try:
        with Subscriber(endpoint, topics=("change.",)) as changes, \
                Subscriber(endpoint, topics=("prediction.cam0",)) as cam0, \
                Subscriber(endpoint, topics=("change.", "status.")) as both:
            wait_joined(lambda: sink.write(probe(factory, "change")()), changes)
            wait_joined(lambda: sink.write(probe(factory, "prediction", "cam0")()), cam0)
            wait_joined(lambda: sink.write(probe(factory, "status")()), both)   # drains its change probes too
            sent = [factory.prediction(make_prediction("cam0")), factory.prediction(make_prediction("cam1")),
                    factory.make("change", "cam0", change_fields()), factory.make("change", "cam1", change_fields()),
                    factory.status(StreamStatus("cam0", "lost", "camera:0")),
                    factory.make("heartbeat", "cam0", heartbeat_fields())]
            for event in sent:
                sink.write(event)
            # Order is kept per publisher, so anything wrongly let through would come first.
            assert [t for t, _ in recv_n(changes, 2)] == ["change.cam0", "change.cam1"]
            assert [t for t, _ in recv_n(cam0, 1)] == ["prediction.cam0"]
            assert [t for t, _ in recv_n(both, 3)] == ["change.cam0", "change.cam1", "status.cam0"]
            for sub in (changes, cam0, both):
                assert sub.recv(0.1) is None
    finally:
        sink.close()


def test_a_late_subscriber_gets_what_is_published_after_it_joined() -> None:
    factory = EventFactory()
    sink = open_sink()
    try:
        for _ in range(50):                       # nobody listening: these are simply gone
            sink.write(factory.prediction(make_prediction()))
        assert sink.sent == 50 and sink.dropped == 0
        with Subscriber(sink.bound_endpoint or "", topics=("prediction.camera0",)) as late:
            wait_joined(lambda: sink.write(factory.prediction(make_prediction())), late)
            seqs = [factory.prediction(make_prediction()) for _ in range(5)]
            for event in seqs:
                sink.write(event)
            got = recv_n(late, 5)
        assert [e["seq"] for _, e in got] == [e["seq"] for e in seqs]
    finally:
        sink.close()


def test_subscribe_generator_ends_after_its_timeout() -> None:
    factory = EventFactory()
    sink = open_sink()
    try:
        gen = subscribe(sink.bound_endpoint or "", topics=("status.",), timeout=0.3)
        got: list[tuple[str, dict]] = []

        def publish() -> None:                    # a generator cannot be polled, so publish from a thread
            end = time.monotonic() + DEADLINE
            while not got and time.monotonic() < end:
                sink.write(probe(factory)())
                time.sleep(0.02)

        thread = threading.Thread(target=publish)
        thread.start()
        started = time.monotonic()
        for item in gen:
            got.append(item)
        thread.join()
        assert got and got[0][0] == "status.probe"
        assert time.monotonic() - started < DEADLINE
    finally:
        sink.close()


# --------------------------------------------------------------------------- never blocking
def test_a_subscriber_that_never_reads_cannot_block_the_publisher(capsys) -> None:
    factory = EventFactory()
    sink = open_sink(sndhwm=100)
    n = 20_000
    events = [factory.prediction(make_prediction()) for _ in range(n)]
    try:
        with Subscriber(sink.bound_endpoint or "", topics=("",), rcvhwm=100) as stuck:
            wait_joined(lambda: sink.write(probe(factory)()), stuck)
            sent_before, times = sink.sent, []
            for event in events:
                t0 = time.perf_counter()
                sink.write(event)
                times.append(time.perf_counter() - t0)
            with capsys.disabled():
                print(f"\nzmq publish with a non-reading subscriber: {n} messages, max "
                      f"{max(times) * 1e3:.2f} ms, mean {statistics.mean(times) * 1e6:.1f} us, "
                      f"total {sum(times):.2f} s; sink dropped {sink.dropped}")
            assert max(times) < 0.05
            assert statistics.mean(times) < 0.002
            assert sink.sent - sent_before + sink.dropped == n   # every write returned: sent or counted
            # Now read: the queues held only part of the flood; the rest was dropped at the
            # high-water marks, which the subscriber counts from the gaps in seq.
            received = []
            while (item := stuck.recv(0.3)) is not None:
                received.append(item[1])
            assert 0 < len(received) < n
            end = time.monotonic() + DEADLINE      # one more event shows whether the tail was lost
            last = None
            while last is None and time.monotonic() < end:
                sink.write(factory.prediction(make_prediction()))
                if (item := stuck.recv(0.05)) is not None:
                    last = item[1]
            assert last is not None
            flood = [e for e in received if e["stream"] == "camera0"]
            assert flood[0]["seq"] == events[0]["seq"]
            seqs = [e["seq"] for e in flood]
            assert seqs == sorted(seqs)
            assert stuck.missed > 0
            assert len(flood) + 1 + stuck.missed == last["seq"] - events[0]["seq"] + 1
            with capsys.disabled():
                print(f"the subscriber then read {len(flood)} of them and counted {stuck.missed} missed")
        stuck_closed = time.monotonic()
    finally:
        sink.close()
    assert time.monotonic() - stuck_closed < 2.0    # LINGER bounds close


# --------------------------------------------------------------------------- CurveZMQ
@pytest.fixture
def curve_keys(tmp_path: Path) -> dict[str, Path]:
    if not zmq.has("curve"):
        pytest.skip("libzmq without CurveZMQ")
    server_dir, clients, allowed, intruder = (tmp_path / d for d in ("server", "clients", "allowed", "intruder"))
    for d in (server_dir, clients, allowed, intruder):
        d.mkdir()
    server_public, server_secret = zmq.auth.create_certificates(server_dir, "server")
    client_public, client_secret = zmq.auth.create_certificates(clients, "client")
    _, intruder_secret = zmq.auth.create_certificates(intruder, "intruder")
    shutil.copy(client_public, allowed)           # only the allowed client's public key
    return {"server_public": Path(server_public), "server_secret": Path(server_secret),
            "client_secret": Path(client_secret), "intruder_secret": Path(intruder_secret),
            "allowed": allowed}


def test_curve_allows_only_known_clients(curve_keys) -> None:
    factory = EventFactory()
    config = load_config(overrides=[
        f"sinks=[{{type: zmq, endpoint: '{ANY_PORT}', curve: {{server_secret_file: "
        f"'{curve_keys['server_secret']}', clients_dir: '{curve_keys['allowed']}'}}}}]"])
    sink = build_sink(config.sinks[0])
    assert isinstance(sink, ZmqSink)
    sink.open()
    endpoint = sink.bound_endpoint or ""
    try:
        with Subscriber(endpoint, curve=CurveClient(curve_keys["client_secret"], curve_keys["server_public"])) as ok, \
                Subscriber(endpoint, curve=(curve_keys["intruder_secret"], curve_keys["server_public"])) as bad, \
                Subscriber(endpoint) as plain:
            wait_joined(lambda: sink.write(probe(factory)()), ok)
            end = time.monotonic() + 1.0          # the others get nothing, while ok keeps receiving
            while time.monotonic() < end:
                sink.write(probe(factory)())
                assert bad.recv(0.02) is None
                assert plain.recv(0.02) is None
            assert ok.recv(1.0) is not None
        assert sink._auth is not None and sink._auth.is_alive()
    finally:
        sink.close()
    assert sink._auth is None


def test_curve_key_errors_name_the_file(curve_keys, tmp_path: Path) -> None:
    missing = tmp_path / "nope.key_secret"
    with pytest.raises(SinkError, match="nope.key_secret"):
        ZmqSink(ANY_PORT, curve_secret_file=str(missing), curve_clients_dir=str(curve_keys["allowed"])).open()
    with pytest.raises(SinkError, match=r"server\.key.*secret"):   # the public file given as the key pair
        ZmqSink(ANY_PORT, curve_secret_file=str(curve_keys["server_public"]),
                curve_clients_dir=str(curve_keys["allowed"])).open()
    with pytest.raises(SinkError, match="no-such-dir"):
        ZmqSink(ANY_PORT, curve_secret_file=str(curve_keys["server_secret"]),
                curve_clients_dir=str(tmp_path / "no-such-dir")).open()
    with pytest.raises(ConfigError, match="nope.key_secret"):
        Subscriber(ANY_PORT.replace("*", "1"), curve=(missing, curve_keys["server_public"]))


# --------------------------------------------------------------------------- errors and config
def test_bind_errors_name_the_endpoint() -> None:
    first = open_sink()
    try:
        taken = first.bound_endpoint or ""
        with pytest.raises(SinkError, match=f"cannot bind .*{taken}"):
            ZmqSink(taken).open()
    finally:
        first.close()
    for bad in ("tcp://no-such-host.invalid:5556", "nope://x", "tcp://127.0.0.1"):
        with pytest.raises(SinkError, match=bad):
            ZmqSink(bad).open()


def test_sink_spec_and_non_loopback_warning(caplog) -> None:
    assert parse_sink_spec("zmq:tcp://127.0.0.1:6000") == {"type": "zmq", "endpoint": "tcp://127.0.0.1:6000"}
    config = load_config(overrides=["sinks=[{type: zmq, sndhwm: 10}]"])
    sink = build_sink(config.sinks[0])
    assert isinstance(sink, ZmqSink)
    assert (sink.endpoint, sink.sndhwm, sink.name) == ("tcp://127.0.0.1:5556", 10, "zmq:tcp://127.0.0.1:5556")
    for local in ("tcp://127.0.0.1:5556", "tcp://localhost:1", "tcp://[::1]:5", "ipc:///tmp/x", "inproc://x"):
        assert is_local_endpoint(local), local
    for remote in ("tcp://*:5556", "tcp://0.0.0.0:5556", "tcp://eth0:5556", "tcp://10.0.0.5:1", "x"):
        assert not is_local_endpoint(remote), remote
    with caplog.at_level(logging.WARNING, logger="realtime.sinks.zmq"):
        loopback = open_sink()
        loopback.close()
        assert not caplog.records
        everywhere = open_sink(endpoint="tcp://0.0.0.0:*", allow_plaintext_remote=True)
        everywhere.close()
    assert any("without CurveZMQ" in r.getMessage() for r in caplog.records)


def test_a_plain_text_feed_on_other_interfaces_needs_an_explicit_choice() -> None:
    with pytest.raises(ConfigError, match=r"tcp://0\.0\.0\.0:5556 is reachable from other machines without "
                                          r"CurveZMQ.*allow_plaintext_remote: true"):
        load_config(overrides=["sinks=[{type: zmq, endpoint: 'tcp://0.0.0.0:5556'}]"])
    config = load_config(overrides=["sinks=[{type: zmq, endpoint: 'tcp://*:5556', "
                                    "allow_plaintext_remote: true}]"])
    assert config.sinks[0].allow_plaintext_remote
    with pytest.raises(SinkError, match="allow_plaintext_remote"):     # the Python API too
        ZmqSink("tcp://0.0.0.0:*").open()


def test_a_secret_key_file_readable_by_others_is_warned_about(curve_keys, caplog) -> None:
    secret = curve_keys["server_secret"]
    for mode, warned in ((0o600, False), (0o644, True)):
        secret.chmod(mode)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="realtime.sinks.zmq"):
            sink = ZmqSink(ANY_PORT, curve_secret_file=str(secret),
                           curve_clients_dir=str(curve_keys["allowed"]))
            sink.open()
            sink.close()
        hits = [r.getMessage() for r in caplog.records if "can be read by other users" in r.getMessage()]
        assert bool(hits) == warned, (mode, hits)
    assert f"(mode 644): chmod 600 {secret}" in hits[0]


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


HOSTILE_SUBSCRIBER = """
import os, sys, time, zmq
ctx = zmq.Context()
socks = []
for i in range(8):
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.SUBSCRIBE, bytes([65 + i]) * 4_000_000)   # a 4 MB topic prefix
    sock.connect(sys.argv[1])
    socks.append(sock)
time.sleep(3)
os._exit(0)      # (terminating a context holding these sockets crashes libzmq here)
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc (Linux)")
def test_an_oversized_subscription_cannot_grow_the_publisher() -> None:
    """Another program sends eight 4 MB subscriptions: each is refused and its connection
    dropped. Unbounded, the publisher kept them (1.4 GiB here; +141 MB in a running pipeline
    for one)."""
    import subprocess
    import sys

    factory = EventFactory()
    sink = open_sink()
    endpoint = sink.bound_endpoint or ""
    try:
        with Subscriber(endpoint) as good:
            wait_joined(lambda: sink.write(probe(factory)()), good)
            before = rss_bytes()
            hostile = subprocess.Popen([sys.executable, "-c", HOSTILE_SUBSCRIBER, endpoint])
            try:
                while hostile.poll() is None:   # the publisher reads subscriptions as it sends
                    sink.write(probe(factory)())
                    time.sleep(0.01)
            finally:
                if hostile.poll() is None:
                    hostile.kill()
                hostile.wait()
            grown = rss_bytes() - before
            assert grown < 32 * 2**20, f"the publisher grew by {grown / 2**20:.0f} MiB"
            sink.write(probe(factory)())
            assert good.recv(2.0) is not None     # the feed goes on for everyone else
    finally:
        sink.close()


# --------------------------------------------------------------------------- realtime listen
def listen_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="realtime")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["listen", *argv])


class Publisher:
    """Publishes ``make()`` every 20 ms on a thread until stopped (the sink is used by that thread only)."""

    def __init__(self, make: Callable[[], list[dict]]) -> None:
        self.sink = open_sink()
        self.make = make
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        end = time.monotonic() + DEADLINE
        while not self.stop.is_set() and time.monotonic() < end:
            for event in self.make():
                self.sink.write(event)
            self.stop.wait(0.02)

    def __enter__(self) -> Publisher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.sink.close()


def test_listen_json_prints_count_lines(capsys, validator) -> None:
    factory = EventFactory()
    with Publisher(lambda: [factory.prediction(make_prediction())]) as pub:
        args = listen_args("--json", "--count", "3", "--endpoint", pub.sink.bound_endpoint or "",
                           "--timeout", str(DEADLINE))
        assert args.func is cmd_listen
        assert cmd_listen(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    events = [json.loads(line) for line in lines]
    assert all(validator.is_valid(e) and e["type"] == "prediction" for e in events)
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)


def test_listen_human_lines_with_topic_filter(capsys) -> None:
    factory = EventFactory()
    with Publisher(lambda: [factory.prediction(make_prediction()),
                            factory.make("heartbeat", "camera0", heartbeat_fields()),
                            factory.make("change", "camera0", change_fields())]) as pub:
        args = listen_args("-e", pub.sink.bound_endpoint or "", "-t", "heartbeat.", "-t", "change.",
                           "--count", "4", "--timeout", str(DEADLINE))
        assert cmd_listen(args) == 0
    lines = capsys.readouterr().out.splitlines()
    states = [line for line in lines if " now: " in line]          # the current state comes first
    assert lines[: len(states)] == states and len(states) <= 1
    lines = lines[len(states):]
    assert len(lines) == 4 and not any("push up (0.91)  latency" in line for line in lines)
    assert any("[camera0] heartbeat: up 61 s, 29.9 fps, 2.0 predictions/s, latency p50 180 ms max 240 ms, "
               "dropped frames=3 windows=0" in line for line in lines)
    assert any("[camera0] -> situp (0.80)" in line for line in lines)


def test_default_endpoints_agree_and_listen_parser_does_not_load_pyzmq() -> None:
    import subprocess
    import sys

    from realtime.cli import listen
    from realtime.feed import subscriber as feed
    from realtime.config import ZmqSinkConfig
    from realtime.sinks import zmq as zmq_sink

    assert ZmqSinkConfig().endpoint == zmq_sink.DEFAULT_ENDPOINT == feed.DEFAULT_ENDPOINT == listen.DEFAULT_ENDPOINT
    code = ("import sys, argparse; from realtime.cli.listen import add_parser; "
            "add_parser(argparse.ArgumentParser().add_subparsers()); print('zmq' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "False", out.stderr


def test_listen_timeout_and_bad_arguments(capsys) -> None:
    with pytest.raises(ConfigError, match="--count"):
        cmd_listen(listen_args("--count", "0"))
    with pytest.raises(ConfigError, match="--client-key"):
        cmd_listen(listen_args("--server-key", "s.key"))
    started = time.monotonic()
    assert cmd_listen(listen_args("-e", "tcp://127.0.0.1:9", "--timeout", "0.2")) == 1
    assert time.monotonic() - started < 5
    assert "no event from tcp://127.0.0.1:9" in capsys.readouterr().err


def test_listen_formats_unknown_and_broken_events() -> None:
    assert format_line("odd.s", {"type": "odd", "stream": "s"}) == 'odd.s {"type":"odd","stream":"s"}'
    line = format_line("prediction.s", {"type": "prediction", "stream": "s", "time": 0})
    assert line.endswith('prediction.s {"type":"prediction","stream":"s","time":0}')


def test_listen_exits_0_on_ctrl_c() -> None:
    import select
    import signal
    import subprocess
    import sys

    factory = EventFactory()
    with Publisher(lambda: [factory.make("change", "camera0", change_fields())]) as pub:
        code = ("import sys, argparse; from realtime.cli.listen import add_parser, cmd_listen; "
                "p = argparse.ArgumentParser(); add_parser(p.add_subparsers()); "
                "sys.exit(cmd_listen(p.parse_args(sys.argv[1:])))")
        proc = subprocess.Popen([sys.executable, "-c", code, "listen", "-e", pub.sink.bound_endpoint or ""],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=Path(__file__).resolve().parents[2])
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], DEADLINE)
            first = proc.stdout.readline() if ready else ""   # it is listening and printing
            if " now: " in first:                                  # the current state comes first
                first = proc.stdout.readline()
            assert "-> situp (0.80)" in first
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=DEADLINE)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
