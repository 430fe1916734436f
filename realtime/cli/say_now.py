"""``realtime say-now``: ask a running instance to say the current activity (or repeat the last
announcement) now, through its feed's request socket."""

from __future__ import annotations

import argparse
import json
import sys

from realtime.config import DEFAULT_ENDPOINT, state_endpoint_for
from realtime.core.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "say-now", help="ask a running instance to say the current activity now",
        description="Ask a running `realtime run` (with a speech sink and the zmq sink) to say the current "
                    "activity at once, or to repeat its last announcement. Prints the words it will say.")
    p.add_argument("--repeat", action="store_true", help="repeat the last announcement instead")
    p.add_argument("--stream", metavar="NAME", help="the stream to tell about (default: the one that changed last)")
    p.add_argument("--endpoint", "-e", default=DEFAULT_ENDPOINT, metavar="E",
                   help=f"the instance's feed (default {DEFAULT_ENDPOINT}; requests go to its port + 1)")
    p.add_argument("--request-endpoint", metavar="E", help="the feed's request socket, when not at its port + 1")
    p.add_argument("--timeout", type=float, default=2.0, metavar="S", help="give up after S seconds (default 2)")
    p.set_defaults(func=cmd_say_now)
    return p


def cmd_say_now(args: argparse.Namespace) -> int:
    import zmq

    from realtime.feed.subscriber import request

    if args.timeout <= 0:
        raise ConfigError(f"--timeout must be > 0, got {args.timeout}")
    endpoint = args.request_endpoint or state_endpoint_for(args.endpoint)
    asked = {"say": "repeat" if args.repeat else "now", **({"stream": args.stream} if args.stream else {})}
    try:
        answer = request(endpoint, json.dumps(asked).encode("utf-8"), args.timeout)
    except (zmq.ZMQError, ValueError) as exc:
        raise ConfigError(f"say-now: {endpoint}: {exc}") from None
    if answer is None:
        print(f"realtime say-now: no answer from {endpoint} within {args.timeout:g} s (is `realtime run` "
              f"running with --sink zmq?)", file=sys.stderr)
        return 1
    if not isinstance(answer, dict) or not answer.get("ok"):
        error = answer.get("error", "refused") if isinstance(answer, dict) else "an answer that is not an object"
        print(f"realtime say-now: {error}", file=sys.stderr)
        return 1
    print(answer.get("text", ""), flush=True)
    return 0
