"""Model names: typos of built-in names, missing directories, malformed hub ids, and an
unreachable hub, all failing at once with an actionable message.

The hub is always a real socket on 127.0.0.1 that this test owns (a closed port, a listener
that never answers, a tiny HTTP server), set as huggingface_hub's endpoint, with an empty
hub cache: nothing here reaches huggingface.co.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

import pytest

from realtime.core.errors import ConfigError, ModelError
from realtime.models import I3D_NAME, create_classifier, near_builtin
from realtime.models.hf import HFVideoClassifier
from realtime.models.hub import HUB_PROBE_TIMEOUT_S

from conftest import write_video

REPO = Path(__file__).resolve().parents[2]
HUB_MODEL = "MCG-NJU/videomae-base-finetuned-kinetic"   # plausible, absent from the (empty) cache
FAST_S = 10.0       # before the fix an unreachable hub took about 25 s (huggingface_hub's retries)


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A socket that listens but never accepts: the kernel completes the TCP handshake and
    queues the connection, so a client connects and then waits for an answer forever."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    s.setblocking(False)
    yield s
    s.close()


def pending_connections(s: socket.socket) -> int:
    n = 0
    while True:
        try:
            conn, _ = s.accept()
        except BlockingIOError:
            return n
        conn.close()
        n += 1


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Callable[[str], None]]:
    """Online mode with an empty hub cache; call the result with a URL to set the endpoint
    (the two constants HF_ENDPOINT sets when huggingface_hub is imported)."""
    import huggingface_hub.constants as hub_constants

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))

    def set_endpoint(url: str) -> None:
        monkeypatch.setattr(hub_constants, "ENDPOINT", url)
        monkeypatch.setattr(hub_constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            url + "/{repo_id}/resolve/{revision}/{filename}")

    yield set_endpoint


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["i3d-kinetic400", "I3D-Kinetics400", "i3d_kinetics_400", "i3d-kinetics",
                                  "kinetics400", "i3d", "i3d-kinetics600"])
def test_near_builtin_names_suggest_the_builtin(name: str) -> None:
    assert near_builtin(name) == I3D_NAME


@pytest.mark.parametrize("name", [I3D_NAME, "MCG-NJU/i3d-kinetics400", "videomae-base", "x3d", "bert-base-uncased",
                                  "facebook/timesformer-base-finetuned-k400"])
def test_other_names_are_not_typos(name: str) -> None:
    assert near_builtin(name) is None


def test_typo_fails_at_once_without_the_network(hub, listener: socket.socket) -> None:
    hub(f"http://127.0.0.1:{listener.getsockname()[1]}")
    started = time.monotonic()
    with pytest.raises(ConfigError) as err:
        create_classifier("i3d-kinetic400")
    assert time.monotonic() - started < 2.0
    assert str(err.value).startswith("unknown model 'i3d-kinetic400': did you mean 'i3d-kinetics400'?")
    assert err.value.exit_code == 2
    assert pending_connections(listener) == 0


def test_existing_directory_is_never_a_typo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("i3d-kinetic400").mkdir()
    with pytest.raises(ModelError, match="has no config.json"):
        create_classifier("i3d-kinetic400")


@pytest.mark.parametrize("name", ["./no-such-model", "no-such-dir/sub/model", "~/no-such-model-9f3b/",
                                  "models/videomae-ft"])
def test_missing_local_directory(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("models").mkdir()         # "models/videomae-ft": ./models exists, so a path was meant
    with pytest.raises(ModelError) as err:
        create_classifier(name)
    assert str(err.value) == f"model directory not found: {os.path.expanduser(name)} (the path does not exist)"
    assert err.value.exit_code == 1


@pytest.mark.parametrize("name", ["bad name", "owner/na me", "a--b", "owner/model.git", "-model"])
def test_malformed_hub_id(name: str) -> None:
    with pytest.raises(ConfigError, match=f"invalid model name '{name}'.*hub id") as err:
        create_classifier(name)
    assert err.value.exit_code == 2


# --------------------------------------------------------------------------- unreachable hub


def assert_offline_message(message: str, model_id: str, endpoint: str) -> None:
    assert f"cannot load Hugging Face model '{model_id}'" in message
    assert f"Hub at {endpoint} could not be reached" in message
    assert "not in the local cache" in message
    assert f"offline model '{I3D_NAME}'" in message and "local directory" in message


def test_refused_hub_fails_fast(hub) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    hub(endpoint)
    started = time.monotonic()
    with pytest.raises(ModelError) as err:
        HFVideoClassifier(HUB_MODEL, device="cpu").load()
    assert time.monotonic() - started < FAST_S
    assert_offline_message(str(err.value), HUB_MODEL, endpoint)
    assert "ConnectError" in str(err.value)


def test_silent_hub_times_out_once(hub, listener: socket.socket) -> None:
    """A hub that accepts and never answers costs one probe timeout, not a timeout per retry."""
    endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
    hub(endpoint)
    started = time.monotonic()
    with pytest.raises(ModelError) as err:
        HFVideoClassifier(HUB_MODEL, device="cpu").load()
    took = time.monotonic() - started
    assert HUB_PROBE_TIMEOUT_S * 0.9 <= took < HUB_PROBE_TIMEOUT_S + 5.0
    assert_offline_message(str(err.value), HUB_MODEL, endpoint)
    assert "Timeout" in str(err.value)
    assert pending_connections(listener) == 1      # one probe, no retries


def test_unreachable_hub_loads_a_cached_model(hub, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A hub model already in the cache loads without the hub, at once."""
    import huggingface_hub.constants as hub_constants
    from support.tiny_models import make_tiny_videomae

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = Path(hub_constants.HF_HUB_CACHE) / "models--example-org--tiny-videomae"
    make_tiny_videomae(repo / "snapshots" / commit, num_labels=3, labels=["a", "b", "c"])
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    hub(f"http://127.0.0.1:{closed_port()}")

    clf = HFVideoClassifier("example-org/tiny-videomae", device="cpu")
    started = time.monotonic()
    with caplog.at_level("WARNING", logger="realtime.models.hf"):
        clf.load()
    assert time.monotonic() - started < FAST_S
    assert clf.labels == ("a", "b", "c")
    assert any("cannot be reached" in r.getMessage() and "local cache" in r.getMessage() for r in caplog.records)


class _NotFoundHub(BaseHTTPRequestHandler):
    """Answers every request as the hub does for a repository that does not exist."""

    def _not_found(self) -> None:
        self.send_response(404)
        self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET = _not_found

    def log_message(self, *args: object) -> None:
        pass


def test_reachable_hub_still_answers_for_itself(hub) -> None:
    """The probe lets a reachable hub through: its own answer (no such repo) is reported."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotFoundHub)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        hub(f"http://127.0.0.1:{server.server_address[1]}")
        started = time.monotonic()
        with pytest.raises(ModelError, match=f"'{HUB_MODEL}' is neither a local model directory nor a model on"):
            HFVideoClassifier(HUB_MODEL, device="cpu").load()
        assert time.monotonic() - started < FAST_S
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=1.0)


# --------------------------------------------------------------------------- the command line


def run_classify(tmp_path: Path, model: str, endpoint: str) -> tuple[subprocess.CompletedProcess, float]:
    clip = write_video(tmp_path / "clip.mp4", frames=8)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=endpoint, HF_HUB_CACHE=str(tmp_path / "hub-cache"))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "realtime", "classify", str(clip), "--model", model,
                           "--no-progress"], check=False, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    return proc, time.monotonic() - started


def test_cli_typo_exits_2_at_once(tmp_path: Path) -> None:
    proc, took = run_classify(tmp_path, "i3d-kinetic400", f"http://127.0.0.1:{closed_port()}")
    assert proc.returncode == 2, proc.stderr
    assert "did you mean 'i3d-kinetics400'?" in proc.stderr
    assert took < FAST_S


def test_cli_unreachable_hub_exits_1_fast(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    proc, took = run_classify(tmp_path, HUB_MODEL, endpoint)
    assert proc.returncode == 1, proc.stderr
    assert_offline_message(proc.stderr, HUB_MODEL, endpoint)
    assert "Retrying" not in proc.stderr
    assert took < FAST_S
