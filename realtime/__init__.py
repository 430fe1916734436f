"""realtime: a streaming real-time activity recognizer."""

__version__ = "0.1.0"
