"""ZeroMQ sink: publishes every event on a PUB socket for other programs to subscribe to.

Each message has two frames: the topic ``f"{type}.{stream}"`` (UTF-8, e.g.
``prediction.camera0``, ``change.camera0``, ``status.camera0``,
``heartbeat.camera0``) and the event as UTF-8 JSON with ``publish_time`` (unix
epoch at send) added. Subscribers filter by topic prefix: ``change.`` gets
every stream's label changes, ``prediction.camera0`` one stream's predictions,
``""`` everything. :mod:`realtime.feed.subscriber` is the matching client.

Never blocks the pipeline: messages are sent with ``NOBLOCK``; a PUB socket
whose per-subscriber queue (``sndhwm`` messages) is full drops further
messages *for that subscriber only* inside libzmq, so one slow or stalled
subscriber cannot slow down the others or the pipeline. Those drops are
invisible to the publisher; subscribers see them as gaps in ``seq`` (per stream,
consecutive across all event types). A send refused with ``zmq.Again`` is
counted in :attr:`ZmqSink.dropped`.

Threads: ZeroMQ sockets are not thread-safe, but may move between threads with
a memory barrier between uses. :meth:`ZmqSink.open` creates and binds the
socket on the pipeline thread *before* the SinkRunner thread starts
(``Thread.start`` is the barrier); every :meth:`~ZmqSink.write` then happens on
that one runner thread; :meth:`~ZmqSink.close` runs after the runner thread has
been joined. The socket is never used by two threads at once.

Optional CurveZMQ (``curve`` in the config): the feed is encrypted and only
clients whose public certificate is in ``clients_dir`` may connect.

State on join: beside the PUB socket a ROUTER socket (``state_endpoint``, by default the feed's
port + 1) answers any request with the current state of every stream
(:mod:`realtime.sinks.state`) as one JSON document ``{"streams": {name: state}, "time": t}``, so a
subscriber that joins mid-run learns what is happening without waiting for the next change
(:meth:`realtime.feed.subscriber.Subscriber.state`). A thread of its own serves it; the state is
updated by the writer thread as events pass. Same security as the feed (CurveZMQ when set).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, TYPE_CHECKING

import zmq
import zmq.auth

from realtime.config import DEFAULT_ENDPOINT, PLAINTEXT_REMOTE_HINT, is_local_endpoint, state_endpoint_for
from realtime.core.errors import SinkError
from realtime.core.events import wire
from realtime.sinks.state import StreamStates

if TYPE_CHECKING:
    from zmq.auth.thread import ThreadAuthenticator

    from realtime.config import ZmqSinkConfig

log = logging.getLogger(__name__)

LINGER_MS = 500  # how long close() may spend delivering queued messages
# What a subscriber may send the PUB socket is its subscriptions (topic prefixes such as
# "prediction.camera0"); a longer message disconnects it instead of growing the socket's memory.
MAX_INCOMING_BYTES = 1024


def _bind(sock: zmq.Socket, endpoint: str, keys: Optional[tuple[bytes, bytes]], failure: str) -> str:
    """Bind ``sock`` (incoming messages bounded, CurveZMQ server when ``keys``) to ``endpoint``;
    the address it got. ``failure`` (with ``{endpoint}`` and ``{exc}``) is the SinkError's text."""
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_INCOMING_BYTES)
    if "[" in endpoint:
        sock.setsockopt(zmq.IPV6, 1)
    if keys is not None:
        sock.curve_publickey, sock.curve_secretkey = keys
        sock.curve_server = True
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        raise SinkError(failure.format(endpoint=endpoint, exc=exc)) from None
    last = sock.getsockopt(zmq.LAST_ENDPOINT)
    return last.decode() if isinstance(last, bytes) else str(last)


def topic_of(event: dict[str, Any]) -> str:
    """The topic an event is published under: ``"{type}.{stream}"``."""
    return f"{event.get('type', 'event')}.{event.get('stream', '')}"


class ZmqSink:
    """Publishes events on a ZeroMQ PUB socket bound to ``endpoint``.

    ``endpoint`` may use port ``*`` (``tcp://127.0.0.1:*``) to let the system
    pick a free port; :attr:`bound_endpoint` tells which after :meth:`open`.
    ``curve_secret_file`` (the server's key pair) and ``curve_clients_dir``
    (allowed clients' public certificates) turn on CurveZMQ; both or neither.
    """

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, sndhwm: int = 1000,
                 curve_secret_file: Optional[str] = None, curve_clients_dir: Optional[str] = None,
                 linger_ms: int = LINGER_MS, allow_plaintext_remote: bool = False,
                 state_endpoint: Optional[str] = None) -> None:
        if (curve_secret_file is None) != (curve_clients_dir is None):
            raise SinkError(f"zmq sink {endpoint}: CurveZMQ needs both server_secret_file and clients_dir")
        self.endpoint = endpoint
        self.name = f"zmq:{endpoint}"
        self.sndhwm = sndhwm
        self.linger_ms = linger_ms
        self.curve_secret_file = curve_secret_file
        self.curve_clients_dir = curve_clients_dir
        self.allow_plaintext_remote = allow_plaintext_remote
        self.bound_endpoint: Optional[str] = None
        self._state_explicit = state_endpoint is not None
        self.state_endpoint = state_endpoint or state_endpoint_for(endpoint)
        self.bound_state_endpoint: Optional[str] = None
        self.states = StreamStates()
        self.state_requests = 0
        self._state_sock: Optional[zmq.Socket] = None
        self._state_thread: Optional[threading.Thread] = None
        self._state_stop = threading.Event()
        # Set by the pipeline: a listener's spoken request ("now" / "repeat") -> the words said.
        self.on_request: Optional[Callable[[str, Optional[str]], Optional[str]]] = None
        self.sent = 0
        self.dropped = 0
        self._ctx: Optional[zmq.Context] = None
        self._sock: Optional[zmq.Socket] = None
        self._auth: Optional[ThreadAuthenticator] = None

    @classmethod
    def from_config(cls, cfg: ZmqSinkConfig) -> ZmqSink:
        curve = cfg.curve
        return cls(cfg.endpoint, sndhwm=cfg.sndhwm,
                   curve_secret_file=curve.server_secret_file if curve else None,
                   curve_clients_dir=curve.clients_dir if curve else None,
                   allow_plaintext_remote=cfg.allow_plaintext_remote, state_endpoint=cfg.state_endpoint)

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        """Create the PUB socket and bind it (on the calling thread; see the module notes)."""
        keys = self._load_server_keys() if self.curve_secret_file else None
        if keys is None and not self.allow_plaintext_remote and not is_local_endpoint(self.endpoint):
            raise SinkError(f"zmq sink: {self.endpoint} is reachable from other machines without "
                            f"CurveZMQ: {PLAINTEXT_REMOTE_HINT}")
        ctx = zmq.Context()
        self._ctx = ctx
        try:
            if keys is not None:
                self._start_authenticator(ctx)
            sock = ctx.socket(zmq.PUB)
            self._sock = sock
            sock.setsockopt(zmq.SNDHWM, self.sndhwm)
            sock.setsockopt(zmq.LINGER, self.linger_ms)
            self.bound_endpoint = _bind(sock, self.endpoint, keys, "cannot bind the ZeroMQ feed to {endpoint}: {exc}")
            self._open_state(ctx, keys)
        except BaseException:
            self.close()
            raise
        secured = "CurveZMQ" if keys is not None else "plain text"
        if keys is None and not is_local_endpoint(self.endpoint):
            log.warning("ZeroMQ feed %s is reachable from other machines without CurveZMQ "
                        "(allow_plaintext_remote): anyone who can connect can read it", self.endpoint)
        log.info("ZeroMQ feed on %s (%s); topics: <type>.<stream>", self.bound_endpoint, secured)

    def _open_state(self, ctx: zmq.Context, keys: Optional[tuple[bytes, bytes]]) -> None:
        """Bind the state socket; its thread starts here (the socket moves to it, see the module)."""
        if not self._state_explicit and self.bound_endpoint:
            # beside the port the feed got (also when it asked for any free one)
            self.state_endpoint = state_endpoint_for(self.bound_endpoint)
        sock = ctx.socket(zmq.ROUTER)
        self._state_sock = sock
        sock.setsockopt(zmq.LINGER, 0)
        self.bound_state_endpoint = _bind(sock, self.state_endpoint, keys,
                                          "cannot bind the ZeroMQ feed's state endpoint to {endpoint}: {exc} "
                                          "(set the zmq sink's state_endpoint)")
        self._state_stop.clear()
        self._state_thread = threading.Thread(target=self._serve_state, name="zmq-state", daemon=True)
        self._state_thread.start()

    def _serve_state(self) -> None:
        sock = self._state_sock
        assert sock is not None
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        while not self._state_stop.is_set():
            if not poller.poll(100):
                continue
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.ZMQError:
                continue
            # ROUTER: [peer id, (empty delimiter from REQ,) request]; the reply mirrors the envelope.
            envelope = frames[:-1]
            reply = json.dumps(self._answer(frames[-1]), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            try:
                sock.send_multipart([*envelope, reply], flags=zmq.NOBLOCK)
                self.state_requests += 1
            except zmq.ZMQError:
                pass                     # the requester left; nothing to do

    def _answer(self, request: bytes) -> dict[str, Any]:
        """``{"say": "now"|"repeat", "stream": S}`` asks the speaking sinks (``realtime say-now``);
        anything else gets the state of every stream."""
        try:
            asked = json.loads(request) if request.startswith(b"{") else None
        except ValueError:
            asked = None
        if isinstance(asked, dict) and asked.get("say") in ("now", "repeat"):
            if self.on_request is None:
                return {"ok": False, "error": "this instance does not speak (no speech sink)"}
            stream = asked.get("stream") if isinstance(asked.get("stream"), str) else None
            try:
                words = self.on_request(asked["say"], stream)
            except Exception as exc:        # the request's failure, reported to the requester
                return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            if words is None:
                return {"ok": False, "error": "this instance does not speak (no speech sink)"}
            return {"ok": True, "say": asked["say"], "text": words}
        return {"streams": self.states.snapshot(), "time": round(time.time(), 6)}

    def _load_server_keys(self) -> tuple[bytes, bytes]:
        assert self.curve_secret_file is not None and self.curve_clients_dir is not None
        if not zmq.has("curve"):
            raise SinkError(f"zmq sink {self.endpoint}: this libzmq was built without CurveZMQ")
        path = self.curve_secret_file
        try:
            public, secret = zmq.auth.load_certificate(path)
        except (OSError, ValueError):
            raise SinkError(f"zmq sink: cannot read the CurveZMQ server key pair {path} "
                            f"(make one with zmq.auth.create_certificates)") from None
        if secret is None:
            raise SinkError(f"zmq sink: {path} holds no secret key; use the server's "
                            f"'.key_secret' file, not its public '.key' file")
        mode = os.stat(path).st_mode & 0o777
        if os.name == "posix" and mode & 0o077:
            log.warning("zmq sink: the secret key file %s can be read by other users (mode %03o): "
                        "chmod 600 %s", path, mode, path)
        clients = Path(self.curve_clients_dir)
        if not clients.is_dir():
            raise SinkError(f"zmq sink: CurveZMQ clients directory not found: {clients}")
        if not any(clients.glob("*.key")):
            log.warning("zmq sink: no client certificates (*.key) in %s; no client can connect", clients)
        return public, secret

    def _start_authenticator(self, ctx: zmq.Context) -> None:
        from zmq.auth.thread import ThreadAuthenticator

        assert self.curve_clients_dir is not None
        auth = ThreadAuthenticator(ctx, log=logging.getLogger(f"{__name__}.auth"))
        auth.start()
        self._auth = auth
        try:
            auth.configure_curve(domain="*", location=os.fspath(self.curve_clients_dir))
        except OSError as exc:
            raise SinkError(f"zmq sink: cannot read CurveZMQ client certificates in "
                            f"{self.curve_clients_dir}: {exc}") from None

    def write(self, event: Mapping[str, Any]) -> None:
        """Publish one event; never blocks (a refused send is counted in ``dropped``)."""
        sock = self._sock
        if sock is None:
            raise RuntimeError("ZmqSink.write() before open()")
        self.states.update(event)
        message = wire(event)
        message["publish_time"] = round(time.time(), 6)
        frames = [topic_of(event).encode("utf-8"),
                  json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")]
        try:
            sock.send_multipart(frames, flags=zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("ZeroMQ feed %s: %d messages dropped (send queue full)",
                            self.endpoint, self.dropped)
            return
        self.sent += 1

    def close(self) -> None:
        """Close the socket (waiting at most ``linger_ms``), stop the authenticator. Idempotent."""
        if self._state_thread is not None:
            self._state_stop.set()
            self._state_thread.join(2.0)
            self._state_thread = None
        if self._state_sock is not None:
            self._state_sock.close(linger=0)
            self._state_sock = None
        if self._sock is not None:
            self._sock.close(linger=self.linger_ms)
            self._sock = None
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    def stats(self) -> dict[str, Any]:
        return {"sent": self.sent, "dropped": self.dropped, "state_requests": self.state_requests}
