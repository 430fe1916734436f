"""Sources that never connect: a bounded number of attempts, then exit 1 with the real cause
(no such camera, connection refused, not found, unauthorised), and no native chatter.

Real parts: a closed port on 127.0.0.1, GStreamer's RTSP server with and without a login, a
real HTTP server, and the command line in its own process.
"""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from conftest import REPO
from support.fakes import ScriptedClassifier
from realtime.config import load_config
from realtime.core.errors import SourceError
from realtime.sources.netprobe import diagnose
from realtime.stream.pipeline import Pipeline
from realtime.sources import open_source
from support.rtsp import RtspServer, rtsp_available

PASSWORD = "S3cr/3t#?x"           # characters that must be percent-encoded in a URL


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def realtime(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "realtime", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.fixture(scope="module")
def rtsp_login():
    ok, reason = rtsp_available()
    if not ok:
        pytest.skip(reason)
    with RtspServer(login=("alice", PASSWORD)) as srv:
        yield srv


def with_login(url: str, user: str, password: str) -> str:
    return url.replace("rtsp://", f"rtsp://{user}:{quote(password, safe='')}@")


# --------------------------------------------------------------------------- the cause, per source


def test_missing_camera_is_named_without_asking_opencv():
    if Path("/dev/video7").exists() or not sys.platform.startswith("linux"):
        pytest.skip("needs a Linux machine without /dev/video7")
    src = open_source("7")
    with pytest.raises(SourceError, match=r"cannot open camera:7: no such camera \(/dev/video7 does not exist"):
        src.open()


def test_refused_connection_is_said_at_once():
    port = closed_port()
    t0 = time.monotonic()
    with pytest.raises(SourceError) as e:
        open_source(f"rtsp://127.0.0.1:{port}/cam", open_timeout=5).open()
    assert time.monotonic() - t0 < 4.0                    # no 5 s timeout it never waited for
    assert str(e.value) == (f"cannot open rtsp://127.0.0.1:{port}/cam: connection refused by "
                            f"127.0.0.1:{port} (nothing listens there)")


@pytest.mark.network
def test_rtsp_wrong_path_missing_login_and_wrong_password(rtsp_login):
    url = rtsp_login.url
    missing = url.replace("/stream", "/nothing-here")
    cases = {
        with_login(missing, "alice", PASSWORD): "not found (404)",
        url: "unauthorised (401): the stream needs a user name and password",
        with_login(url, "alice", "wrong"): "unauthorised (401): the server rejected the user name or password",
    }
    for source, cause in cases.items():
        with pytest.raises(SourceError) as e:
            open_source(source, open_timeout=5).open()
        assert cause in str(e.value), (source, str(e.value))
        assert PASSWORD not in str(e.value) and quote(PASSWORD, safe="") not in str(e.value)
    good = open_source(with_login(url, "alice", PASSWORD), open_timeout=5)
    good.open()                                           # the right login opens it
    try:
        frame, _ = good.read()
        assert frame.shape == (240, 320, 3)
    finally:
        good.close()


class _Answers(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:                             # noqa: N802 (the stdlib's name)
        if self.path == "/locked":
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="cam"')
            self.end_headers()
        else:
            self.send_error(404)

    def log_message(self, *args) -> None:
        pass


def test_http_not_found_and_unauthorised():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    thread = threading.Thread(target=server.serve_forever, name="test-http", daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert diagnose(f"{base}/cam.mjpg") == "not found (404): the server has no stream at this path"
        assert diagnose(f"{base}/locked").startswith("unauthorised (401): the stream needs")
        assert diagnose(f"http://bob:pw@127.0.0.1:{server.server_address[1]}/locked") == \
            "unauthorised (401): the server rejected the user name or password"
        with pytest.raises(SourceError, match="not found"):
            open_source(f"{base}/cam.mjpg", open_timeout=3).open()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(2)


def test_host_not_found_and_silent_server():
    assert diagnose("rtsp://no-such-host.invalid/cam", timeout=2) == "host not found: no-such-host.invalid"
    with socket.socket() as quiet:                        # accepts, never answers
        quiet.bind(("127.0.0.1", 0))
        quiet.listen()
        port = quiet.getsockname()[1]
        t0 = time.monotonic()
        cause = diagnose(f"rtsp://127.0.0.1:{port}/cam", timeout=1.0)
    assert time.monotonic() - t0 < 3.0
    assert cause == f"timed out connecting to 127.0.0.1:{port}" or "did not answer" in cause, cause


# --------------------------------------------------------------------------- the pipeline and the CLI


def test_status_detail_of_a_refusal_states_the_cause():
    port = closed_port()
    events: list[dict] = []
    cfg = load_config(None, [f"source.uri=rtsp://127.0.0.1:{port}/cam", "source.connect_attempts=2",
                             "source.reconnect.initial_delay=0.05"])
    p = Pipeline(cfg, classifier=ScriptedClassifier(), on_event=events.append)
    with pytest.raises(SourceError, match="gave up after 2 attempts"):
        p.run(20)
    details = [e["detail"] for e in events if e["type"] == "status"]
    assert len(details) == 2 and all("connection refused" in d for d in details), details
    assert not any("within" in d for d in details)


def test_cli_gives_up_on_a_camera_that_does_not_exist():
    if Path("/dev/video7").exists() or not sys.platform.startswith("linux"):
        pytest.skip("needs a Linux machine without /dev/video7")
    t0 = time.monotonic()
    r = realtime("run", "--source", "7", "--sink", "jsonl:-")
    assert time.monotonic() - t0 < 30
    assert r.returncode == 1, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("realtime: error: cannot open camera:7: no such camera"), last
    assert "gave up after 3 attempts" in last
    assert "[ERROR" not in r.stderr and "obsensor" not in r.stderr and "WARN:" not in r.stderr


def test_cli_gives_up_on_a_refused_stream_with_one_clear_line():
    port = closed_port()
    r = realtime("run", "--source", f"rtsp://bob:{quote(PASSWORD, safe='')}@127.0.0.1:{port}/cam",
                 "--set", "source.connect_attempts=2", "--sink", "console")
    assert r.returncode == 1, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last == (f"realtime: error: cannot open rtsp://***@127.0.0.1:{port}/cam: connection refused "
                    f"by 127.0.0.1:{port} (nothing listens there) (gave up after 2 attempts; no frame "
                    f"was ever received)")
    assert "Traceback" not in r.stderr and "[rtsp @" not in r.stderr
