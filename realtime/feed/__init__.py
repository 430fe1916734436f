"""The label feed's client side: subscribe to a running pipeline's ZeroMQ events.

``subscribe(endpoint)`` yields ``(topic, event)`` pairs; :class:`Subscriber` is the same as a
context manager with ``recv(timeout)``; :func:`load_schema` gives the events' JSON Schema (the
contract of the wire format, ``events.schema.json`` beside this file).
"""

from realtime.feed.subscriber import CurveClient, Subscriber, load_schema, subscribe

__all__ = ["CurveClient", "Subscriber", "load_schema", "subscribe"]
