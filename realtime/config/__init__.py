"""Configuration: the schema of a run (:mod:`.schema`), reading YAML, presets and ``--set``
overrides (:mod:`.loading`, :mod:`.presets`).

Strict: an unknown key or a bad value fails at start-up with the key path and what is allowed.
Only the pipeline and the command line look at the whole tree; components take plain arguments.
The names below are the layer's public face: ``from realtime.config import load_config, Config``.
"""

from __future__ import annotations

from realtime.config.loading import (
    text_line, read_yaml, parse_override, parse_value, apply_override, build_config, sink_types,
    load_config, dump_config,
)
from realtime.config.schema import (
    ReconnectConfig, STREAM_NAME, safe_stream_name, SourceConfig, ModelConfig, WindowConfig,
    InferenceConfig, SmoothingConfig, EventsConfig, ConsoleSinkConfig, JsonlSinkConfig,
    ZmqCurveConfig, check_bind_endpoint, is_local_endpoint, state_endpoint_for, DEFAULT_ENDPOINT, PLAINTEXT_REMOTE_HINT,
    ZmqSinkConfig, OverlaySinkConfig, SpeechSinkConfig, MqttSinkConfig, SinkConfig, SinkQueueConfig, RunConfig,
    Config,
)

__all__ = [
    "text_line",
    "read_yaml",
    "parse_override",
    "parse_value",
    "apply_override",
    "build_config",
    "sink_types",
    "load_config",
    "dump_config",
    "ReconnectConfig",
    "STREAM_NAME",
    "safe_stream_name",
    "SourceConfig",
    "ModelConfig",
    "WindowConfig",
    "InferenceConfig",
    "SmoothingConfig",
    "EventsConfig",
    "ConsoleSinkConfig",
    "JsonlSinkConfig",
    "ZmqCurveConfig",
    "check_bind_endpoint",
    "is_local_endpoint",
    "state_endpoint_for",
    "DEFAULT_ENDPOINT",
    "PLAINTEXT_REMOTE_HINT",
    "ZmqSinkConfig",
    "MqttSinkConfig",
    "OverlaySinkConfig",
    "SpeechSinkConfig",
    "SinkConfig",
    "SinkQueueConfig",
    "RunConfig",
    "Config",
]
