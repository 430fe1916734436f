#!/usr/bin/python3
"""A small RTSP server for tests, built on GStreamer's gst-rtsp-server.

Run it with the *system* interpreter (``/usr/bin/python3``), which has the
GObject-introspection bindings (``gi``); the project's virtualenv does not.
Tests drive it through :class:`tests.support.rtsp.RtspServer`.

It serves one H.264 stream at ``rtsp://127.0.0.1:PORT/PATH``, from one of:

* a live ``videotestsrc is-live=true`` pattern (the default);
* ``--file PATH``: a video file (any format GStreamer decodes), decoded once
  into memory at start-up, scaled to ``--width`` x ``--height`` at ``--fps``,
  and played live in an endless loop (meant for short clips: every frame is
  kept as raw I420, about 115 kB per frame at 320x240);
* ``--stamp``: either of the above with each frame's send time written into
  its top rows (see below); the pattern is then a pre-rendered one-second loop.

``--user NAME --password PW`` makes the stream need that login (Basic authentication).

Every stream is encoded with x264 (zero latency, a key frame every half
second), so a client that joins at any moment gets a picture quickly. The
media is shared: several clients can watch at once. The server listens on
127.0.0.1 only.

Once listening it prints ``READY <port>`` on stdout (flushed); with
``--port 0`` that is the port the kernel picked. SIGTERM and SIGINT stop it
cleanly with exit status 0; failures go to stderr with a non-zero status.

Frame stamps: the top ``STAMP_ROWS`` rows hold ``STAMP_BITS`` equal-width
blocks, most significant bit first, black for 0 and white for 1: the low 32
bits of the wall-clock time in milliseconds (``time.time()``) at which the
frame was handed to the encoder, then an 8-bit check (the XOR of those four
bytes). ``tests.support.rtsp.read_stamp`` decodes them from an OpenCV frame,
so a test can tell how old a frame is, or whether it is one it saw before.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstVideo", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer, GstVideo  # noqa: E402

BIND_ADDRESS = "127.0.0.1"

# Frame stamp layout; tests/support/rtsp.py decodes the same layout.
STAMP_ROWS = 16
STAMP_BITS = 40  # 32 bits of milliseconds + 8 check bits
STAMP_MIN_WIDTH = 4 * STAMP_BITS
_BLACK, _WHITE, _GREY = 16, 235, 128  # video-range luma, neutral chroma


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8554, help="TCP port; 0 picks a free one")
    parser.add_argument("--path", default="/stream", help="mount point, e.g. /stream")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--file", help="serve this video file in a loop instead of a test pattern")
    parser.add_argument("--stamp", action="store_true", help="write each frame's send time into it")
    parser.add_argument("--user", help="require this user name (HTTP Basic authentication)")
    parser.add_argument("--password", default="", help="and this password")
    args = parser.parse_args(argv)
    if not args.path.startswith("/"):
        args.path = "/" + args.path
    if args.width <= 0 or args.height <= 0 or args.fps <= 0:
        parser.error("--width, --height and --fps must be positive")
    if args.stamp and (args.width < STAMP_MIN_WIDTH or args.height < STAMP_ROWS):
        parser.error(f"--stamp needs at least {STAMP_MIN_WIDTH}x{STAMP_ROWS} pixels")
    return args


def raw_caps(width: int, height: int, fps: int) -> str:
    return f"video/x-raw,format=I420,width={width},height={height},framerate={fps}/1"


def encoder_tail(fps: int) -> str:
    """The encode-and-payload end of every pipeline, ending in the ``pay0`` the server needs."""
    key_int = max(1, fps // 2)
    return (
        f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={key_int} "
        "! video/x-h264,profile=constrained-baseline "
        "! rtph264pay name=pay0 pt=96 config-interval=1"
    )


class PatternFactory(GstRtspServer.RTSPMediaFactory):
    """A live moving test pattern, straight from ``videotestsrc is-live=true``."""

    def __init__(self, width: int, height: int, fps: int) -> None:
        super().__init__()
        self.set_launch(
            "( videotestsrc is-live=true pattern=ball "
            f"! {raw_caps(width, height, fps)} ! {encoder_tail(fps)} )"
        )


class Stamper:
    """Writes the frame stamp (see the module docstring) into raw I420 frames."""

    def __init__(self, width: int, height: int) -> None:
        info = GstVideo.VideoInfo.new()
        info.set_format(GstVideo.VideoFormat.I420, width, height)
        self._width = width
        self._y_stride, self._u_stride, self._v_stride = list(info.stride)[:3]
        self._y_offset, self._u_offset, self._v_offset = list(info.offset)[:3]
        self._block = width // STAMP_BITS
        self._grey_u = bytes([_GREY]) * (self._u_stride * STAMP_ROWS // 2)
        self._grey_v = bytes([_GREY]) * (self._v_stride * STAMP_ROWS // 2)

    def stamp(self, frame: bytes, now: float) -> bytes:
        millis = int(now * 1000) & 0xFFFFFFFF
        check = (millis ^ (millis >> 8) ^ (millis >> 16) ^ (millis >> 24)) & 0xFF
        value = (millis << 8) | check
        bits = [(value >> (STAMP_BITS - 1 - k)) & 1 for k in range(STAMP_BITS)]
        row = b"".join(bytes([_WHITE if bit else _BLACK]) * self._block for bit in bits)
        row = row.ljust(self._y_stride, bytes([_BLACK]))
        out = bytearray(frame)
        out[self._y_offset : self._y_offset + len(row) * STAMP_ROWS] = row * STAMP_ROWS
        out[self._u_offset : self._u_offset + len(self._grey_u)] = self._grey_u
        out[self._v_offset : self._v_offset + len(self._grey_v)] = self._grey_v
        return bytes(out)


class LoopFactory(GstRtspServer.RTSPMediaFactory):
    """In-memory frames played live in a loop through ``appsrc``, optionally stamped.

    Each media (one per burst of clients, since the factory is shared) gets a
    :class:`Feeder` thread that pushes one frame every ``1/fps`` seconds while
    the media exists. ``appsrc`` keeps at most two frames queued and drops the
    oldest, like a live camera would.
    """

    def __init__(self, frames: list[bytes], width: int, height: int, fps: int, stamp: bool) -> None:
        super().__init__()
        self._frames = frames
        self._fps = fps
        self._stamper = Stamper(width, height) if stamp else None
        self.set_launch(
            "( appsrc name=src is-live=true do-timestamp=true format=time "
            f"max-buffers=2 leaky-type=downstream caps={raw_caps(width, height, fps)} "
            f"! {encoder_tail(fps)} )"
        )
        self.connect("media-configure", self._on_media_configure)

    def _on_media_configure(self, _factory, media) -> None:
        appsrc = media.get_element().get_by_name_recurse_up("src")
        feeder = Feeder(appsrc, self._frames, self._fps, self._stamper)
        media.connect("unprepared", lambda _media: feeder.stop())
        feeder.start()


class Feeder(threading.Thread):
    """Pushes frames into an ``appsrc`` at a steady rate until stopped.

    After a stall (say the process was SIGSTOPped) it does not burst to catch
    up: it sends the next frame at once and keeps the rate from there.
    """

    def __init__(self, appsrc, frames: list[bytes], fps: int, stamper: Stamper | None) -> None:
        super().__init__(name="frame-feeder", daemon=True)
        self._appsrc = appsrc
        self._frames = frames
        self._period = 1.0 / fps
        self._stamper = stamper
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        index = 0
        due = time.monotonic()
        while not self._stopped.is_set():
            frame = self._frames[index % len(self._frames)]
            index += 1
            if self._stamper is not None:
                frame = self._stamper.stamp(frame, time.time())
            # Returns FLUSHING until the media plays; the frame is just dropped.
            self._appsrc.emit("push-buffer", Gst.Buffer.new_wrapped(frame))
            due += self._period
            delay = due - time.monotonic()
            if delay < 0:
                due = time.monotonic()
            else:
                self._stopped.wait(delay)


def render_frames(source: str, width: int, height: int, fps: int) -> list[bytes]:
    """Run *source* (a pipeline fragment) to the end and keep every frame as raw I420."""
    pipeline = Gst.parse_launch(
        f"{source} ! videoconvert ! videoscale ! videorate "
        f"! {raw_caps(width, height, fps)} ! appsink name=sink sync=false"
    )
    sink = pipeline.get_by_name("sink")
    bus = pipeline.get_bus()
    pipeline.set_state(Gst.State.PLAYING)
    frames = []
    try:
        while True:
            sample = sink.emit("try-pull-sample", 100 * Gst.MSECOND)
            if sample is not None:
                buf = sample.get_buffer()
                frames.append(buf.extract_dup(0, buf.get_size()))
                continue
            if sink.get_property("eos"):
                break
            # A failure (say, an unknown format) never reaches the appsink as EOS.
            error = bus.pop_filtered(Gst.MessageType.ERROR)
            if error is not None:
                err, debug = error.parse_error()
                raise RuntimeError(f"{err.message} ({debug})")
    finally:
        pipeline.set_state(Gst.State.NULL)
    if not frames:
        raise RuntimeError("no video frames")
    return frames


def make_factory(args: argparse.Namespace) -> GstRtspServer.RTSPMediaFactory:
    if args.file is None and not args.stamp:
        return PatternFactory(args.width, args.height, args.fps)
    if args.file is not None:
        source = f'uridecodebin uri="{Gst.filename_to_uri(args.file)}"'
    else:
        source = f"videotestsrc pattern=ball num-buffers={args.fps}"
    try:
        frames = render_frames(source, args.width, args.height, args.fps)
    except (RuntimeError, GLib.Error) as exc:
        raise SystemExit(f"rtsp_server: cannot decode {args.file or source}: {exc}") from None
    return LoopFactory(frames, args.width, args.height, args.fps, args.stamp)


def require_login(server, factory, user: str, password: str) -> None:
    """Only ``user`` with ``password`` may open the stream; others get 401 Unauthorized."""
    role = "viewer"
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, role)
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
    server.set_auth(auth)
    perms, _ = Gst.Structure.from_string(
        f"{role}, media.factory.access=(boolean)true, media.factory.construct=(boolean)true")
    factory.add_role_from_structure(perms)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    Gst.init(None)
    factory = make_factory(args)
    factory.set_shared(True)
    # Unicast RTP/RTCP over UDP binds to an address from the pool (the wildcard
    # address without one), so the UDP transport stays on loopback too.
    pool = GstRtspServer.RTSPAddressPool()
    pool.add_range(BIND_ADDRESS, BIND_ADDRESS, 20000, 29999, 0)
    factory.set_address_pool(pool)

    server = GstRtspServer.RTSPServer()
    if args.user is not None:
        require_login(server, factory, args.user, args.password)
    server.set_address(BIND_ADDRESS)
    server.set_service(str(args.port))
    server.get_mount_points().add_factory(args.path, factory)

    # attach() creates the listening socket, with SO_REUSEADDR, so a restart on
    # the same port is not blocked by connections left in TIME_WAIT.
    if server.attach(None) == 0:
        print(f"rtsp_server: cannot listen on {BIND_ADDRESS}:{args.port}", file=sys.stderr)
        return 1

    loop = GLib.MainLoop()

    def quit_loop() -> bool:
        loop.quit()
        return GLib.SOURCE_REMOVE

    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, quit_loop)

    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
