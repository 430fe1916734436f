#!/usr/bin/env python3
"""Watch a camera, stream or file and say what activity it sees (same as `realtime run`)."""

import sys

from realtime.cli import run_camera_main

if __name__ == "__main__":
    sys.exit(run_camera_main())
