"""The MQTT sink against a real broker (Debian's mosquitto) started by the tests, with subscribers in
other processes (mosquitto_sub): retained state for a late subscriber, change events in order, the
last will when the process is killed, a broker down at start and killed mid-run, and Home
Assistant discovery messages whose templates render as Home Assistant renders them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, write_video
from realtime.core.events import EventFactory
from realtime.core.types import StreamState, StreamStatus
from support.mqtt_broker import Broker, Subscriber, available

pytestmark = pytest.mark.skipif(not available(), reason="mosquitto is not installed (scripts/setup.sh --test)")

# the tiny random model is never sure: a lower bar makes changes
LOW_BAR = ["--set", "smoothing.enter=0.1", "--set", "smoothing.exit=0.05", "--set", "smoothing.min_dwell_seconds=0.2"]


def _video(path, seconds=4):
    return write_video(path, frames=30 * seconds, size=(64, 48),
                       color_of=lambda k: ((k * 37) % 256, (k // 20 * 90) % 256, (255 - k * 3) % 256))


def _run(*args, **kw):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "realtime", "run", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path).start()
    yield b
    b.kill()


def test_state_is_retained_for_late_subscribers_and_changes_arrive_in_order(broker, tiny_model, tmp_path):
    early = Subscriber(broker, "realtime/#")
    out = tmp_path / "events.jsonl"
    try:
        run = _run("--source", str(_video(tmp_path / "v.mp4")), "--model", str(tiny_model), "--device", "cpu",
                   "--sink", f"mqtt:{broker.url}", "--sink", f"jsonl:{out}", "--set", "source.pace=fast", *LOW_BAR)
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0, err[-3000:]
        events = [json.loads(line) for line in out.read_text().splitlines()]
        changes = [e for e in events if e["type"] == "change"]
        assert changes, "no change event to publish"
        stream = changes[0]["stream"]
        # every change and status event on <prefix>/<stream>/events, in the pipeline's order
        assert early.wait_for(lambda m: sum(t == "realtime/available" and p == "offline" for _, t, p, _ in m) >= 1)
        received = [json.loads(p) for p in early.on(f"realtime/{stream}/events")]
        expected = [e for e in events if e["type"] in ("change", "status")]
        assert [(e["type"], e["seq"]) for e in received] == [(e["type"], e["seq"]) for e in expected]
        assert [e["label"] for e in received if e["type"] == "change"] == [c["label"] for c in changes]
        ids = [e["event_id"] for e in received]
        assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[0-9a-f]{12}-.+-\d+", i) for i in ids)
        assert all(e["time"] <= e["publish_time"] for e in received)
        assert early.on("realtime/available")[0] == "online"
    finally:
        early.close()

    # a subscriber that joins after the run gets the current state at once, retained
    late = Subscriber(broker, f"realtime/{stream}/state", "realtime/available")
    try:
        started = time.monotonic()
        assert late.wait_for(lambda m: len(m) >= 2, timeout=5)
        assert time.monotonic() - started < 2
        retained = {t: (r, p) for r, t, p, _ in late.messages}
        assert retained["realtime/available"] == (True, "offline")           # stopped cleanly
        flag, payload = retained[f"realtime/{stream}/state"]
        state = json.loads(payload)
        assert flag and state["label"] == changes[-1]["label"] and state["since"] == changes[-1]["time"]
        assert state["stream_state"] == "ended" and state["stream"] == stream
    finally:
        late.close()


def test_offline_is_the_last_will_when_the_process_is_killed(broker, tiny_model, tmp_path):
    sub = Subscriber(broker, "realtime/available")
    run = _run("--source", str(_video(tmp_path / "v.mp4")), "--model", str(tiny_model), "--device", "cpu",
               "--sink", f"mqtt:{broker.url}", "--set", "source.loop=true")
    try:
        assert sub.wait_for(lambda m: any(p == "online" for _, _, p, _ in m), timeout=60), run.stderr
        run.send_signal(signal.SIGKILL)
        run.wait(10)
        killed = time.monotonic()
        assert sub.wait_for(lambda m: m[-1][2] == "offline", timeout=10)
        assert sub.messages[-1][3] - killed < 5            # the broker sends the will at once
    finally:
        if run.poll() is None:
            run.kill()
        sub.close()


def test_broker_down_at_start_and_killed_mid_run_the_pipeline_goes_on(tmp_path, tiny_model):
    broker = Broker(tmp_path)                              # its port is chosen, nothing listens yet
    out = tmp_path / "events.jsonl"
    run = _run("--source", str(_video(tmp_path / "v.mp4")), "--model", str(tiny_model), "--device", "cpu",
               "--sink", f"mqtt:{broker.url}", "--sink", f"jsonl:{out}", "--set", "source.loop=true",
               "--set", "events.heartbeat_seconds=0.5", "--log-level", "info")

    def predictions() -> int:
        return out.read_text().count('"prediction"') if out.exists() else 0

    def grows(seconds: float) -> bool:
        before, deadline = predictions(), time.monotonic() + seconds
        while time.monotonic() < deadline:
            if predictions() > before + 2:
                return True
            time.sleep(0.1)
        return False

    sub = None
    try:
        assert grows(60), "the pipeline does not run while the broker is down"
        broker.start()
        sub = Subscriber(broker, "realtime/#")
        assert sub.wait_for(lambda m: any(t == "realtime/available" and p == "online" for _, t, p, _ in m), 30)
        assert sub.wait_for(lambda m: any(t.endswith("/stats") for _, t, _, _ in m), 10)
        sub.close()
        broker.kill()                                      # mid-run
        assert grows(10), "the pipeline stalled when the broker went away"
        broker.start()                                     # same port: the sink reconnects by itself
        sub = Subscriber(broker, "realtime/#")
        assert sub.wait_for(lambda m: any(t == "realtime/available" and p == "online" for _, t, p, _ in m), 40)
        assert sub.wait_for(lambda m: any(t.endswith("/stats") for _, t, _, _ in m), 10)
        assert run.poll() is None
    finally:
        run.send_signal(signal.SIGINT)
        try:
            _, err = run.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            run.kill()
            _, err = run.communicate()
        if sub is not None:
            sub.close()
        broker.kill()
    assert run.returncode == 0, err[-3000:]
    assert "connection to mqtt://127.0.0.1" in err and "lost" in err       # said, once per outage


def test_home_assistant_discovery_is_valid_and_sent_again_when_home_assistant_restarts(broker):
    jinja2 = pytest.importorskip("jinja2")
    from realtime.sinks.mqtt import MqttSink

    sub = Subscriber(broker, "homeassistant/#", "realtime/#")
    sink = MqttSink(broker.url, homeassistant=True)
    sink.open()
    factory = EventFactory()
    try:
        sink.write(factory.status(StreamStatus("front door", StreamState.CONNECTED, "cam", "", wall=time.time())))
        change = factory.make("change", "front door", {"label": "falling", "score": 0.9, "uncertain": False,
                                                       "previous": None, "previous_duration": None})
        sink.write(change)
        assert sub.wait_for(lambda m: sum(t.startswith("homeassistant/") for _, t, _, _ in m) >= 2, 10)
        configs = {t: json.loads(p) for r, t, p, _ in sub.messages if t.startswith("homeassistant/")}
        assert set(configs) == {"homeassistant/sensor/realtime/front_door_activity/config",
                                "homeassistant/event/realtime/front_door_change/config"}
        late = Subscriber(broker, "homeassistant/#")                   # retained: a new subscriber gets them
        try:
            assert late.wait_for(lambda m: len(m) >= 2, 5) and all(r for r, _, _, _ in late.messages)
        finally:
            late.close()
        ids = [c["unique_id"] for c in configs.values()]
        assert len(set(ids)) == 2
        for topic, c in configs.items():
            assert re.fullmatch(r"homeassistant/(sensor|event)/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+/config", topic)
            assert c["availability_topic"] == "realtime/available"
            assert (c["payload_available"], c["payload_not_available"]) == ("online", "offline")
            assert c["device"]["identifiers"] == ["realtime_front_door"] and c["name"]
        sensor = configs["homeassistant/sensor/realtime/front_door_activity/config"]
        event = configs["homeassistant/event/realtime/front_door_change/config"]
        assert sensor["state_topic"] == sensor["json_attributes_topic"] == "realtime/front_door/state"
        assert event["state_topic"] == "realtime/front_door/events" and event["event_types"] == ["change"]
        # the templates, rendered as Home Assistant renders them (Jinja2, value_json = the payload)
        assert sub.wait_for(lambda m: any(t == "realtime/front_door/state" and '"falling"' in p
                                          for _, t, p, _ in m), 10)
        state = json.loads(sub.on("realtime/front_door/state")[-1])
        render = lambda template, payload: jinja2.Environment().from_string(template).render(value_json=payload)  # noqa: E731
        assert render(sensor["value_template"], state) == "falling"
        events = [json.loads(p) for p in sub.on("realtime/front_door/events")]
        fired = json.loads(render(event["value_template"], next(e for e in events if e["type"] == "change")))
        assert fired["event_type"] in event["event_types"] and fired["label"] == "falling"
        assert json.loads(render(event["value_template"], next(e for e in events if e["type"] == "status"))) == {}

        # Home Assistant restarts and says so: the entities are announced again
        before = sum(t.startswith("homeassistant/sensor") for _, t, _, _ in sub.messages)
        subprocess.run(["mosquitto_pub", "-p", str(broker.port), "-t", "homeassistant/status", "-m", "online"],
                       check=True, timeout=10)
        assert sub.wait_for(lambda m: sum(t.startswith("homeassistant/sensor") for _, t, _, _ in m) > before, 10)
    finally:
        sink.close()
        sub.close()


def test_the_asyncapi_document_describes_the_topics_the_sink_uses():
    import jsonschema
    import yaml
    from importlib import resources

    from realtime.sinks.mqtt import MqttSink
    from realtime.sinks.state import StreamStates

    doc = yaml.safe_load((resources.files("realtime.feed") / "mqtt.asyncapi.yaml").read_text())
    events = json.loads((resources.files("realtime.feed") / "events.schema.json").read_text())
    assert doc["asyncapi"].startswith("3.")
    sink = MqttSink("mqtt://127.0.0.1:1", prefix="realtime")
    channels = doc["channels"]
    for leaf in ("state", "events", "prediction", "stats"):
        address = channels[leaf]["address"].format(prefix="realtime", stream="cam_1")
        assert address == sink.topic("cam 1", leaf)
    assert channels["available"]["address"].format(prefix="realtime") == sink.availability_topic
    for channel in channels.values():
        for message in channel["messages"].values():
            ref = message["payload"].get("$ref")
            if ref:
                assert ref.startswith("events.schema.json#/$defs/") and ref.rsplit("/", 1)[1] in events["$defs"]
    factory = EventFactory()
    states = StreamStates()
    states.update(factory.status(StreamStatus("cam", StreamState.CONNECTED, "cam", "", wall=time.time())))
    state = states.update(factory.make("change", "cam", {"label": "abseiling", "score": 0.8, "uncertain": False,
                                                         "previous": None, "previous_duration": None}))
    jsonschema.validate(state, channels["state"]["messages"]["state"]["payload"])
