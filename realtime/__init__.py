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
    "Pipeline": "realtime.pipeline",
    "make_config": "realtime.pipeline",
    "Config": "realtime.config",
    "load_config": "realtime.config",
    "classify_file": "realtime.classify",
    "Prediction": "realtime.types",
    "LabelScore": "realtime.types",
    "StreamStatus": "realtime.types",
    "Subscriber": "realtime.feed",
    "subscribe": "realtime.feed",
    "RealtimeError": "realtime.errors",
    "ConfigError": "realtime.errors",
    "SourceError": "realtime.errors",
    "ModelError": "realtime.errors",
    "SinkError": "realtime.errors",
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
