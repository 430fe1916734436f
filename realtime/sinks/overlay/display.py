"""Whether an overlay window can be shown here: OpenCV's GUI backend and a reachable display.

``cv2.imshow`` without a display aborts the whole process (Qt cannot be caught),
so the overlay sink opens a window only after :func:`display_status` found a
display it can reach and an OpenCV built with a GUI. Kept apart from the sink
because it is plain environment probing (sockets, environment variables), with
no frames or threads.
"""

from __future__ import annotations

import os
import re
import socket
import sys

import cv2


def gui_framework() -> str:
    """OpenCV's highgui backend ("QT", "GTK3", "WIN32", "COCOA", ...) or "" for a headless build."""
    current = getattr(cv2, "currentUIFramework", None)
    if callable(current):
        try:
            name = str(current() or "")
        except cv2.error:
            name = ""
        return "" if name.upper() in ("", "NONE") else name
    match = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    name = match.group(1) if match else ""
    return "" if name.upper() == "NONE" else name


def x_display_reachable(display: str, timeout: float = 0.5) -> bool:
    """Whether an X server answers at ``display`` ("[host]:N[.screen]"); a connect, no protocol."""
    match = re.fullmatch(r"(?P<host>[^:]*):(?P<num>\d+)(?:\.\d+)?", display.strip())
    if not match:
        return False
    host, num = match.group("host"), int(match.group("num"))
    if host in ("", "unix"):
        addresses = [f"/tmp/.X11-unix/X{num}"]
        if sys.platform.startswith("linux"):
            addresses.append(f"\0/tmp/.X11-unix/X{num}")     # the abstract socket
        for address in addresses:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                try:
                    sock.connect(address)
                    return True
                except OSError:
                    continue
        return False
    try:
        with socket.create_connection((host, 6000 + num), timeout=timeout):
            return True
    except OSError:
        return False


def _wayland_reachable(name: str) -> bool:
    if os.path.isabs(name):
        return os.path.exists(name)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return bool(runtime) and os.path.exists(os.path.join(runtime, name))


def display_status() -> tuple[bool, str]:
    """(True, what) when a window can be shown; else (False, why not).

    Linux and other X11 systems need ``DISPLAY`` (an X server that accepts a
    connection) or ``WAYLAND_DISPLAY`` (with a GUI backend that speaks Wayland:
    OpenCV's bundled Qt only has the X11 plugin), and OpenCV built with a GUI.
    """
    framework = gui_framework()
    if not framework:
        return False, "OpenCV was built without a GUI backend (opencv-python-headless?)"
    if sys.platform in ("win32", "darwin"):
        return True, f"{framework} on {sys.platform}"
    x_display = os.environ.get("DISPLAY", "")
    wayland = os.environ.get("WAYLAND_DISPLAY", "")
    if not x_display and not wayland:
        return False, "neither DISPLAY nor WAYLAND_DISPLAY is set"
    if x_display:
        if x_display_reachable(x_display):
            return True, f"{framework} on X display {x_display}"
        if not wayland:
            return False, f"no X server answers on DISPLAY={x_display}"
    if framework.upper().startswith("QT"):
        return False, (f"WAYLAND_DISPLAY={wayland} but OpenCV's Qt can only use X11 "
                       f"and no X server answers on DISPLAY={x_display or '(unset)'}")
    if _wayland_reachable(wayland):
        return True, f"{framework} on Wayland display {wayland}"
    return False, f"no Wayland compositor at WAYLAND_DISPLAY={wayland}"
