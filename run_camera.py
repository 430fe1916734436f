#!/usr/bin/env python3
"""Watch a camera, stream or file and say what activity it sees (same as `realtime run`)."""

from realtime.cli.main import exit_process, run_camera_main

if __name__ == "__main__":
    exit_process(run_camera_main())
