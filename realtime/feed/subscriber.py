"""Read the ZeroMQ feed of a running ``realtime run --sink zmq`` from your own program.

Every message is ``(topic, event)``: the topic is ``"{type}.{stream}"``
(``prediction.camera0``, ``change.camera0``, ``status.camera0``,
``heartbeat.camera0``) and the event a dict as described by
``realtime/feed/events.schema.json`` (:func:`load_schema`). Topics are
matched by prefix: ``"change."`` selects every stream's label changes,
``"prediction.camera0"`` one stream's predictions, ``""`` everything.

Example::

    from realtime.feed.subscriber import subscribe

    for topic, event in subscribe("tcp://127.0.0.1:5556", topics=("change.", "status.")):
        if event["type"] == "change":
            print(f"{event['stream']}: {event['previous']} -> {event['label']} ({event['score']:.2f})")
        else:
            print(f"{event['stream']}: {event['state']} {event['detail']}")

Or, with control over waiting::

    from realtime.feed.subscriber import Subscriber

    with Subscriber("tcp://127.0.0.1:5556", topics=("prediction.camera0",)) as sub:
        while True:
            item = sub.recv(timeout=5.0)          # None after 5 s without a message
            if item is None:
                print("no predictions for 5 s")
                continue
            topic, event = item
            print(event["label"], event["score"])

With CurveZMQ (docs/events-and-feed.md), pass the client's key pair and the server's
public certificate: ``subscribe(..., curve=CurveClient("client.key_secret",
"server.key"))`` (a plain ``(client_secret_file, server_public_file)`` tuple
works too).

A subscriber that joins mid-run can ask for the current state of every stream at once
(:meth:`Subscriber.state`, or ``subscribe(..., with_state=True)``, which yields each stream's
state as a ``("state.<stream>", {"type": "state", ...})`` item before the live events, and drops
live events the snapshot already covers)::

    with Subscriber("tcp://127.0.0.1:5556", topics=("change.",)) as sub:
        for stream, state in (sub.state() or {}).items():
            print(f"{stream}: {state['label']} since {state['since']}")

Like any ZeroMQ subscription this is fire-and-forget: messages published
before the subscription reached the publisher are not received, and a
subscriber that reads too slowly loses messages once ``sndhwm`` of them are
queued for it. ``seq`` is consecutive per stream across all event types, so
a subscriber to all of a stream's topics can detect losses as gaps;
:attr:`Subscriber.missed` counts them when subscribed to everything.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any, Iterable, Iterator, Optional, Union

import zmq
import zmq.auth

from realtime.config import DEFAULT_ENDPOINT, state_endpoint_for
from realtime.core.errors import ConfigError

log = logging.getLogger(__name__)


PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class CurveClient:
    """CurveZMQ client keys: this client's key pair and the server's public certificate.

    ``client_secret_file`` is a ``.key_secret`` file from
    ``zmq.auth.create_certificates`` (its ``.key`` twin must be in the
    server's ``clients_dir``); ``server_public_file`` is the server's ``.key``.
    """

    client_secret_file: PathLike
    server_public_file: PathLike


CurveSpec = Union[CurveClient, tuple[PathLike, PathLike]]


MAX_EVENT_BYTES = 1 << 20


@functools.lru_cache(maxsize=1)
def _schema_text() -> str:
    return (resources.files("realtime.feed") / "events.schema.json").read_text(encoding="utf-8")


def load_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) that every event satisfies (a fresh copy each call)."""
    schema: dict[str, Any] = json.loads(_schema_text())
    return schema


def _client_keys(curve: CurveSpec) -> tuple[bytes, bytes, bytes]:
    """(client public, client secret, server public) read from the certificate files."""
    spec = curve if isinstance(curve, CurveClient) else CurveClient(*curve)
    try:
        public, secret = zmq.auth.load_certificate(spec.client_secret_file)
    except (OSError, ValueError):
        raise ConfigError(f"cannot read the CurveZMQ client key pair {os.fspath(spec.client_secret_file)}"
                          ) from None
    if secret is None:
        raise ConfigError(f"{os.fspath(spec.client_secret_file)} holds no secret key; use the client's "
                          f"'.key_secret' file")
    try:
        server_public, _ = zmq.auth.load_certificate(spec.server_public_file)
    except (OSError, ValueError):
        raise ConfigError(f"cannot read the CurveZMQ server certificate {os.fspath(spec.server_public_file)}"
                          ) from None
    return public, secret, server_public


class Subscriber:
    """A SUB socket connected to a realtime ZeroMQ feed (use it from one thread).

    ``topics`` are prefixes to subscribe to (``("",)`` = everything).
    ``timeout`` (seconds, None = forever) ends iteration after that long
    without a message; :meth:`recv` takes its own timeout. Connecting does
    not wait for the publisher: ZeroMQ connects (and reconnects) in the
    background, so a subscriber may start before the publisher.
    """

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, topics: Iterable[str] = ("",),
                 timeout: Optional[float] = None, curve: Optional[CurveSpec] = None,
                 rcvhwm: int = 10_000, state_endpoint: Optional[str] = None) -> None:
        self.endpoint = endpoint
        #: where :meth:`state` asks (default: the feed's port + 1, as the zmq sink binds it)
        self.state_endpoint = state_endpoint or state_endpoint_for(endpoint)
        self._curve = curve
        self._covered: dict[str, int] = {}     # stream -> seq the last state snapshot covers
        self.topics = tuple(topics)
        self.timeout = timeout
        #: events lost between the publisher and this subscriber, from gaps in ``seq``;
        #: counted only when subscribed to everything (``""``), as filtering makes gaps too
        self.missed = 0
        self._track_gaps = "" in self.topics
        self._last_seq: dict[str, int] = {}
        keys = _client_keys(curve) if curve is not None else None
        self._ctx = zmq.Context()
        self._sock: Optional[zmq.Socket] = self._ctx.socket(zmq.SUB)
        sock = self._sock
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, rcvhwm)
        # An event is a few KiB; a publisher sending far more is cut off, not buffered.
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_EVENT_BYTES)
        if "[" in endpoint:
            sock.setsockopt(zmq.IPV6, 1)
        if keys is not None:
            sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = keys
        for topic in self.topics:
            sock.setsockopt(zmq.SUBSCRIBE, topic.encode("utf-8"))
        try:
            sock.connect(endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise ConfigError(f"cannot connect to the ZeroMQ feed {endpoint}: {exc}") from None
        self._poller = zmq.Poller()
        self._poller.register(sock, zmq.POLLIN)

    def recv(self, timeout: Optional[float] = None) -> Optional[tuple[str, dict[str, Any]]]:
        """The next ``(topic, event)``, or None when ``timeout`` seconds pass without one.

        ``timeout=None`` waits forever. Malformed messages are logged and skipped.
        """
        if self._sock is None:
            raise RuntimeError("Subscriber is closed")
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            wait_ms = None if deadline is None else max(0, round((deadline - time.monotonic()) * 1000))
            if not self._poller.poll(wait_ms):
                return None
            frames = self._sock.recv_multipart(zmq.NOBLOCK)
            item = _decode(frames)
            if item is not None and self._covered:
                seq, stream = item[1].get("seq"), item[1].get("stream")
                if isinstance(seq, int) and isinstance(stream, str) and seq <= self._covered.get(stream, -1):
                    continue                 # already in the state snapshot
            if item is not None:
                if self._track_gaps:
                    self._count_gap(item[1])
                return item
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def state(self, timeout: float = 1.0) -> Optional[dict[str, dict[str, Any]]]:
        """The current state of every stream, by stream name, asked of the publisher's state
        endpoint (each: ``label``, ``score``, ``uncertain``, ``since``, ``stream_state``, ``seq``,
        ``time``; see ``realtime.sinks.state``), or None when it does not answer within
        ``timeout`` seconds. Live events the answer already covers are dropped from then on."""
        if self._sock is None:
            raise RuntimeError("Subscriber is closed")
        try:
            answer = request(self.state_endpoint, b"state", timeout, curve=self._curve, ctx=self._ctx)
        except (zmq.ZMQError, ValueError) as exc:
            log.warning("no state from %s: %s", self.state_endpoint, exc)
            return None
        streams = answer.get("streams") if isinstance(answer, dict) else None
        if not isinstance(streams, dict):
            return None
        for name, state in streams.items():
            if isinstance(state, dict) and isinstance(state.get("seq"), int):
                self._covered[name] = max(self._covered.get(name, -1), state["seq"])
        return streams

    def _count_gap(self, event: dict[str, Any]) -> None:
        stream, seq = event.get("stream"), event.get("seq")
        if not isinstance(stream, str) or not isinstance(seq, int):
            return
        last = self._last_seq.get(stream)
        if last is not None and seq > last + 1:
            self.missed += seq - last - 1
        self._last_seq[stream] = seq     # a smaller seq means the publisher restarted

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield messages until ``self.timeout`` seconds pass without one (forever if None)."""
        while True:
            item = self.recv(self.timeout)
            if item is None:
                return
            yield item

    def close(self) -> None:
        """Close the socket and its context. Idempotent."""
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
        if not self._ctx.closed:
            self._ctx.term()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def request(endpoint: str, payload: bytes, timeout: float, curve: Optional[CurveSpec] = None,
            ctx: Optional[zmq.Context] = None) -> Optional[Any]:
    """One request to a feed's state/request socket (``state_endpoint``): the JSON answer, or None
    when none comes within ``timeout`` seconds. Raises zmq.ZMQError, or ValueError for an answer
    that is not JSON."""
    own = ctx is None
    context = zmq.Context() if ctx is None else ctx
    req = context.socket(zmq.REQ)
    try:
        req.setsockopt(zmq.LINGER, 0)
        req.setsockopt(zmq.MAXMSGSIZE, 16 * MAX_EVENT_BYTES)
        if "[" in endpoint:
            req.setsockopt(zmq.IPV6, 1)
        if curve is not None:
            req.curve_publickey, req.curve_secretkey, req.curve_serverkey = _client_keys(curve)
        req.connect(endpoint)
        req.send(payload)
        if not req.poll(max(0, round(timeout * 1000)), zmq.POLLIN):
            return None
        return json.loads(req.recv())
    finally:
        req.close(linger=0)
        if own:
            context.term()


def _decode(frames: list[bytes]) -> Optional[tuple[str, dict[str, Any]]]:
    if len(frames) != 2:
        log.warning("skipping a message with %d frames (expected topic and JSON)", len(frames))
        return None
    try:
        topic = frames[0].decode("utf-8")
        event = json.loads(frames[1])
    except (UnicodeDecodeError, ValueError) as exc:
        log.warning("skipping a malformed message: %s", exc)
        return None
    if not isinstance(event, dict):
        log.warning("skipping a message on %r that is not a JSON object", topic)
        return None
    return topic, event


def subscribe(endpoint: str = DEFAULT_ENDPOINT, topics: Iterable[str] = ("",),
              timeout: Optional[float] = None, curve: Optional[CurveSpec] = None,
              with_state: bool = False) -> Iterator[tuple[str, dict[str, Any]]]:
    """Read a running pipeline's label feed.

    Args:
        endpoint: the ZeroMQ endpoint the pipeline's ``zmq`` sink publishes on.
        topics: topic prefixes to receive (``"change."``, ``"status.cam1"``; ``""``: all).
        timeout: end after this many seconds without a message (None: never).
        curve: client keys and the server's public key for a CurveZMQ feed.
        with_state: first yield each stream's current state as ``("state.<stream>", {"type":
            "state", ...})`` (see :meth:`Subscriber.state`; nothing when the publisher does not answer).

    Yields:
        ``(topic, event)``: the event as the JSON Schema describes it (``load_schema()``).
        The socket is closed when the loop ends or the generator is closed.
    """
    with Subscriber(endpoint, topics, timeout=timeout, curve=curve) as sub:
        if with_state:
            for stream, state in (sub.state() or {}).items():
                yield f"state.{stream}", {"type": "state", **state}
        yield from sub
