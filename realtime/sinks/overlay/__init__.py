"""The overlay sink: pure drawing (draw), display detection (display), video files (video_file)
and the sink that ties them to the window and the writer thread (sink)."""
