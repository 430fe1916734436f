"""Errors the user can act on. Every message names the file, key or URL at fault."""

from __future__ import annotations


class RealtimeError(Exception):
    """Base class: the CLI prints these as one clean line, never a traceback."""

    exit_code = 1


class ConfigError(RealtimeError):
    """Bad configuration: unknown key, bad value, unreadable YAML."""

    exit_code = 2


class SourceError(RealtimeError):
    """A video source cannot be opened or read."""


class ModelError(RealtimeError):
    """A model cannot be found, downloaded or loaded."""


class SinkError(RealtimeError):
    """An output sink cannot be set up."""
