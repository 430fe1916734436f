"""Stream passwords holding ``/ # ? @`` and spaces: the stream still opens, and the password
turns up in no output: log lines (at debug level), the final error, JSON events, the ZeroMQ feed
(topics and payloads, as bytes), ``--print-config``, the stream name.

Real parts: GStreamer's RTSP server with a login, the command line in its own process, a ZeroMQ
subscriber socket, a tiny transformers model.
"""

from __future__ import annotations

import json
import threading

import pytest
import zmq

from conftest import realtime
from realtime.core.redact import (credentials, expand_env, for_opener, host_of, redact_text, redact_url,
                             remember)
from support.rtsp import RtspServer, free_port, rtsp_available

HOSTILE = ["S3cr/3tPW", "p#ss w0rd", "a?b=c&d", "at@sign@", "x:y/z#q?r s"]
SERVER_PASSWORD = "S3cr/3t#PW?x @y"


@pytest.mark.parametrize("password", HOSTILE)
def test_url_parts_take_everything_to_the_last_at_as_user_info(password):
    url = f"rtsp://alice:{password}@cam.local:8554/live/1?fps=5"
    assert credentials(url) == ("alice", password)
    assert host_of(url) == "cam.local"
    assert redact_url(url) == "rtsp://***@cam.local:8554/live/1?fps=5"
    assert password not in redact_url(url) and "alice" not in redact_url(url)
    # FFmpeg decodes percent-encoded user info: the encoded URL has one '@', before the host.
    opened = for_opener(url)
    assert opened.count("@") == 1 and opened.split("@")[1] == "cam.local:8554/live/1?fps=5"
    assert credentials(opened) == ("alice", password)


@pytest.mark.parametrize("query,shown", [
    ("pw=hunter22", "pw=***"), ("user=bob&passwd=hunter22", "user=bob&passwd=***"),
    ("access_token=hunter22&fps=3", "access_token=***&fps=3"), ("api_key=hunter22", "api_key=***"),
])
def test_secret_query_values_are_hidden(query, shown):
    assert redact_url(f"http://cam/video.mjpg?{query}") == f"http://cam/video.mjpg?{shown}"


def test_remembered_secrets_are_hidden_in_free_text_even_when_split_by_spaces():
    url = "rtsp://carol:open sesame 42@10.1.1.1/s?token=tok3n-xyz"
    remember(url)
    text = redact_text(f"ffmpeg said: {url} failed; password 'open sesame 42', token tok3n-xyz")
    assert "sesame" not in text and "tok3n" not in text and "carol" not in text
    assert "10.1.1.1" in text


def test_ipv6_hosts_and_broken_urls():
    assert host_of("rtsp://u:p@[fe80::1]:554/s") == "fe80::1"
    assert host_of("rtsp://[::1:bad/s") == ""          # unterminated bracket: no host, no exception
    assert redact_url("rtsp://u:p/w@[::1:bad/s") == "rtsp://***@[::1:bad/s"


def test_environment_references_are_expanded(monkeypatch):
    monkeypatch.setenv("CAM_PW", "S3cr/3t")
    assert expand_env("rtsp://alice:${CAM_PW}@h/s") == "rtsp://alice:S3cr/3t@h/s"
    monkeypatch.delenv("CAM_PW")
    with pytest.raises(KeyError, match="environment variable CAM_PW named in the source URL is not set"):
        expand_env("rtsp://alice:${CAM_PW}@h/s")


# --------------------------------------------------------------------------- every output, for real


@pytest.fixture(scope="module")
def server():
    ok, reason = rtsp_available()
    if not ok:
        pytest.skip(reason)
    with RtspServer(login=("alice", SERVER_PASSWORD)) as srv:
        yield srv


class FeedRecorder:
    """A SUB socket that keeps every frame of every message, as bytes."""

    def __init__(self, endpoint: str) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.setsockopt(zmq.RCVTIMEO, 200)
        self.sock.connect(endpoint)
        self.frames: list[bytes] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.frames.extend(self.sock.recv_multipart())
            except zmq.Again:
                continue

    def close(self) -> list[bytes]:
        self.stop.set()
        self.thread.join(5)
        self.sock.close(0)
        self.ctx.term()
        return self.frames


def assert_hidden(where: str, text: str | bytes) -> None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for piece in (SERVER_PASSWORD, "S3cr", "3t#PW", "PW?x", "@y@"):
        assert piece not in text, f"{piece!r} shows in {where}:\n{text[-2000:]}"


@pytest.mark.network
@pytest.mark.parametrize("how", ["in the URL", "from the environment"])
def test_a_hostile_password_opens_the_stream_and_shows_nowhere(server, tiny_model, tmp_path, how):
    port = server.url.split(":")[2].split("/")[0]
    password, env = (SERVER_PASSWORD, {}) if how == "in the URL" else ("${CAM_PW}",
                                                                        {"CAM_PW": SERVER_PASSWORD})
    source = f"rtsp://alice:{password}@127.0.0.1:{port}/stream"
    out, feed = tmp_path / "events.jsonl", f"tcp://127.0.0.1:{free_port()}"
    recorder = FeedRecorder(feed)
    try:
        r = realtime("run", "--source", source, "--model", str(tiny_model), "--duration", "6",
                    "--log-level", "debug", "--sink", f"jsonl:{out}", "--sink", f"zmq:{feed}", env=env)
    finally:
        frames = recorder.close()
    assert r.returncode == 0, r.stderr[-3000:]
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert any(e["type"] == "prediction" for e in events), "the stream never opened"
    assert {e["stream"] for e in events} == {"127-0-0-1"}          # the host, not the user name
    sources = {e["source"] for e in events if e["type"] == "status"}
    assert sources == {f"rtsp://***@127.0.0.1:{port}/stream"}, sources
    assert frames, "the feed published nothing"
    assert all(not f.startswith(b"status.alice") for f in frames)
    assert_hidden("the log (stderr)", r.stderr)
    assert_hidden("stdout", r.stdout)
    assert_hidden("the JSON events", out.read_text())
    for frame in frames:
        assert_hidden("the ZeroMQ feed", frame)


@pytest.mark.network
def test_a_wrong_hostile_password_fails_with_the_cause_and_no_password(server):
    port = server.url.split(":")[2].split("/")[0]
    wrong = "n0t/the#pass?word @x"
    r = realtime("run", "--source", f"rtsp://alice:{wrong}@127.0.0.1:{port}/stream", "--model", "i3d-kinetics400",
                "--set", "source.connect_attempts=1", "--log-level", "debug", timeout=90)
    assert r.returncode == 1, r.stderr[-3000:]
    assert r.stderr.strip().splitlines()[-1] == (
        f"realtime: error: cannot open rtsp://***@127.0.0.1:{port}/stream: unauthorised (401): the "
        f"server rejected the user name or password (gave up after 1 attempt; no frame was ever "
        f"received)")
    for piece in (wrong, "n0t", "the#pass", "word @x"):
        assert piece not in r.stderr


def test_print_config_hides_the_password():
    r = realtime("run", "--source", f"rtsp://alice:{SERVER_PASSWORD}@cam/s?pw=hunter22",
                "--print-config", timeout=60)
    assert r.returncode == 0, r.stderr
    assert "rtsp://***@cam/s?pw=***" in r.stdout
    assert_hidden("--print-config", r.stdout + r.stderr)
    assert "hunter22" not in r.stdout


def test_an_unset_environment_variable_is_named(tmp_path):
    r = realtime("run", "--source", "rtsp://alice:${NO_SUCH_VAR_X}@cam/s", "--model", "i3d-kinetics400",
                timeout=60)
    assert r.returncode == 1, r.stderr
    assert "environment variable NO_SUCH_VAR_X named in the source URL is not set" in r.stderr
    assert "Traceback" not in r.stderr
