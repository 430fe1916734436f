"""The overlay sink: pure drawing (draw) and the window/video writer (sink)."""
