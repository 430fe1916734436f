"""On demand: a listener asks a running pipeline what is happening, through the feed's request
socket (as ``realtime say-now`` does) and gets the words at once, said within 300 ms."""

from __future__ import annotations

import json
import time

import pytest
import zmq

from conftest import realtime, write_video
from realtime.stream.pipeline import Pipeline, make_config
from realtime.sinks.speech import SpeechSink
from realtime.sinks.zmq import ZmqSink

pytest.importorskip("pyttsx3")


def test_say_now_through_the_feed_answers_within_300_ms(tiny_model, tmp_path):
    video = write_video(tmp_path / "v.mp4", frames=90, size=(64, 48),
                        color_of=lambda k: ((k * 37) % 256, (k // 20 * 90) % 256, (255 - k * 3) % 256))
    config = make_config(str(video), str(tiny_model), sinks=[], settings={
        "model.device": "cpu", "source.loop": True, "smoothing.enter": 0.1, "smoothing.exit": 0.05,
        "smoothing.min_dwell_seconds": 0.2})
    speech = SpeechSink(speak=False, save_dir=str(tmp_path / "wav"), min_score=0.0, cooldown_seconds=0.0)
    feed = ZmqSink("tcp://127.0.0.1:*")
    pipeline = Pipeline(config, sinks=[speech, feed])
    pipeline.start()
    ctx = zmq.Context()
    try:
        deadline = time.monotonic() + 60
        while not speech.spoken and time.monotonic() < deadline:       # the first activity is announced
            time.sleep(0.05)
        assert speech.spoken, "nothing was announced"
        sock = ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(feed.bound_state_endpoint)
        asked = time.monotonic()
        sock.send(json.dumps({"say": "now"}).encode())
        assert sock.poll(1000, zmq.POLLIN)
        answer = json.loads(sock.recv())
        answered = time.monotonic() - asked
        sock.close()
        assert answer["ok"] and answer["say"] == "now" and answer["text"].startswith("Now ")
        assert answered < 0.3, f"answered in {answered * 1000:.0f} ms"
        deadline = time.monotonic() + 5
        while not any(p.kind.value == "now" for p in speech.spoken) and time.monotonic() < deadline:
            time.sleep(0.02)
        said = next(p for p in speech.spoken if p.kind.value == "now")
        assert said.text == answer["text"] and said.started - said.requested < 0.3

        r = realtime("say-now", "--repeat", "--request-endpoint", feed.bound_state_endpoint or "", timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() and r.stdout.strip() != answer["text"]      # the last announcement, not "now"
    finally:
        ctx.term()
        pipeline.stop()
    names = sorted(p.name for p in (tmp_path / "wav").glob("*.wav"))
    assert any("_now_" in n for n in names) and any("_repeat_" in n for n in names), names


def test_say_now_says_why_when_no_instance_answers(tmp_path):
    r = realtime("say-now", "--endpoint", "tcp://127.0.0.1:1", "--timeout", "0.3")
    assert r.returncode == 1 and "no answer from tcp://127.0.0.1:2" in r.stderr and "Traceback" not in r.stderr
