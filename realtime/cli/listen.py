"""``realtime listen``: print the events of a running ZeroMQ feed (human-readable or JSON lines)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Optional

from realtime.config import DEFAULT_ENDPOINT
from realtime.core.errors import ConfigError
from realtime.sinks.console import format_event

if TYPE_CHECKING:
    from realtime.feed.subscriber import CurveClient



def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``listen`` command to ``realtime``'s subcommands."""
    p = subparsers.add_parser(
        "listen", help="print the events of a running ZeroMQ feed",
        description="Subscribe to the ZeroMQ feed of `realtime run --sink zmq` and print its events. "
                    "Topics are '<type>.<stream>' (prediction.camera0, change.camera0, status.camera0, "
                    "heartbeat.camera0), matched by prefix.")
    p.add_argument("--endpoint", "-e", default=DEFAULT_ENDPOINT, metavar="E",
                   help=f"where the feed is published (default {DEFAULT_ENDPOINT})")
    p.add_argument("--topic", "-t", dest="topics", action="append", default=[], metavar="PREFIX",
                   help="only topics starting with PREFIX, e.g. 'change.' or 'prediction.camera0' "
                        "(repeatable; default: everything)")
    p.add_argument("--json", action="store_true", help="print each event as one JSON line")
    p.add_argument("--count", type=int, metavar="N", help="exit after N events")
    p.add_argument("--no-state", dest="state", action="store_false",
                   help="do not start with the current state of every stream (asked of the feed's "
                        "state endpoint, by default its port + 1)")
    p.add_argument("--state-endpoint", metavar="E", help="where the feed answers state requests, when not "
                                                         "at its port + 1")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="give up after S seconds without an event (exit 1 if --count was not reached, "
                        "or, without --count, if nothing arrived)")
    p.add_argument("--client-key", metavar="FILE",
                   help="CurveZMQ: this client's key pair (a .key_secret file); needs --server-key")
    p.add_argument("--server-key", metavar="FILE",
                   help="CurveZMQ: the server's public certificate (its .key file)")
    p.set_defaults(func=cmd_listen)
    return p


def format_heartbeat(event: dict[str, Any]) -> str:
    """One line for a heartbeat event."""
    def num(value: Any, fmt: str, unit: str = "") -> str:
        return "-" if value is None else f"{value:{fmt}}{unit}"

    dropped = event.get("dropped") or {}
    drops = " ".join(f"{k}={v}" for k, v in dropped.items() if not isinstance(v, (dict, list)))
    return (f"[{event.get('stream', '?')}] heartbeat: up {num(event.get('uptime'), '.0f', ' s')}, "
            f"{num(event.get('fps'), '.1f')} fps, {num(event.get('predictions_per_second'), '.1f')} "
            f"predictions/s, latency p50 {num(event.get('latency_ms_p50'), '.0f', ' ms')} "
            f"max {num(event.get('latency_ms_max'), '.0f', ' ms')}"
            + (f", dropped {drops}" if drops else ""))


def format_line(topic: str, event: dict[str, Any]) -> str:
    """The human-readable line ``realtime listen`` prints: local time, then the event."""
    try:
        text = format_heartbeat(event) if event.get("type") == "heartbeat" else format_event(event)
    except (KeyError, TypeError, ValueError):  # a field missing or of an unexpected type
        text = None
    if text is None:
        text = f"{topic} {json.dumps(event, ensure_ascii=False, separators=(',', ':'))}"
    stamp = event.get("time")
    if isinstance(stamp, (int, float)):
        return f"{time.strftime('%H:%M:%S', time.localtime(stamp))} {text}"
    return text


def format_state(stream: str, state: dict[str, Any]) -> str:
    """One line for a stream's current state (what ``listen`` prints first)."""
    since = state.get("since")
    when = f" since {time.strftime('%H:%M:%S', time.localtime(since))}" if isinstance(since, (int, float)) else ""
    label = state.get("label")
    what = f"{label} ({state.get('score') or 0:.2f}){when}" if label else "no activity yet"
    connection = f", stream {state['stream_state']}" if state.get("stream_state") else ""
    return f"[{stream}] now: {what}{connection}"


def _curve(args: argparse.Namespace) -> Optional[CurveClient]:
    if args.client_key is None and args.server_key is None:
        return None
    if args.client_key is None or args.server_key is None:
        raise ConfigError("CurveZMQ needs both --client-key and --server-key")
    from realtime.feed.subscriber import CurveClient
    return CurveClient(args.client_key, args.server_key)


def cmd_listen(args: argparse.Namespace) -> int:
    """Print events until --count, --timeout or Ctrl-C (which exits 0)."""
    if args.count is not None and args.count < 1:
        raise ConfigError(f"--count must be >= 1, got {args.count}")
    if args.timeout is not None and args.timeout <= 0:
        raise ConfigError(f"--timeout must be > 0, got {args.timeout}")
    from realtime.feed.subscriber import Subscriber

    topics = args.topics or [""]
    received = 0
    try:
        with Subscriber(args.endpoint, topics, curve=_curve(args), state_endpoint=args.state_endpoint) as sub:
            if args.state:
                for stream, state in (sub.state(timeout=1.0) or {}).items():
                    doc = {"type": "state", **state}
                    print(json.dumps(doc, ensure_ascii=False, separators=(",", ":")) if args.json
                          else format_state(stream, state), flush=True)
            while args.count is None or received < args.count:
                item = sub.recv(args.timeout)
                if item is None:
                    if received and args.count is None:
                        return 0
                    got = f"only {received} of {args.count} events" if received else "no event"
                    print(f"realtime listen: {got} from {args.endpoint} "
                          f"(then {args.timeout:g} s without one)", file=sys.stderr)
                    return 1
                topic, event = item
                if args.json:
                    line = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
                else:
                    line = format_line(topic, event)
                print(line, flush=True)
                received += 1
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # e.g. `realtime listen | head`: the reader is gone, not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return 0
