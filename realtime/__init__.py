"""realtime: a streaming real-time activity recognizer.

Embedding it takes a few lines (README, "Embedding")::

    from realtime import Pipeline

    with Pipeline.create("clip.mp4", on_prediction=lambda p, probs: print(p.label, p.score)) as run:
        run.wait()

The names below load on first use, so ``import realtime`` stays cheap (no torch).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Pipeline": "realtime.stream.pipeline",
    "make_config": "realtime.stream.pipeline",
    "Config": "realtime.config",
    "load_config": "realtime.config",
    "classify_file": "realtime.tools.classify",
    "Prediction": "realtime.core.types",
    "LabelScore": "realtime.core.types",
    "StreamStatus": "realtime.core.types",
    "Event": "realtime.core.events",
    "PredictionEvent": "realtime.core.events",
    "ChangeEvent": "realtime.core.events",
    "StatusEvent": "realtime.core.events",
    "HeartbeatEvent": "realtime.core.events",
    "StreamState": "realtime.core.types",
    "Subscriber": "realtime.feed.subscriber",
    "subscribe": "realtime.feed.subscriber",
    "RealtimeError": "realtime.core.errors",
    "ConfigError": "realtime.core.errors",
    "SourceError": "realtime.core.errors",
    "ModelError": "realtime.core.errors",
    "SinkError": "realtime.core.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'realtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
