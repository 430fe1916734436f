"""The overlay's video file: H.264 (yuv420p) with PyAV, the mp4v fallback, odd sizes, finalising.

Every test writes real frames through the sink and opens the written file again: with PyAV
(the test dependency) and, where installed, ffprobe as a second opinion.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from realtime.core.errors import SinkError
from realtime.sinks.overlay.draw import OverlayState, draw_overlay, headline_rect, panel_rect, update_state
from realtime.sinks.overlay import video_file as overlay_module
from realtime.sinks.overlay.sink import OverlaySink

from conftest import make_meta

LOGGER = "realtime.sinks.overlay.sink"


SOURCE_BGR = (40, 90, 160)
BITS = 8                             # frame index marker: 8 black/white cells along the bottom


def _cells(h: int) -> list[tuple[slice, slice]]:
    return [(slice(h - 20, h - 8), slice(8 + 16 * b, 8 + 16 * b + 14)) for b in range(BITS)]


def source(i: int, h: int = 240, w: int = 320) -> np.ndarray:
    """Frame i of the synthetic stream: a flat colour with i written in binary along the bottom."""
    img = np.full((h, w, 3), SOURCE_BGR, np.uint8)
    for b, cell in enumerate(_cells(h)):
        img[cell] = 255 if i >> b & 1 else 0
    return img


def source_index(img: np.ndarray) -> int:
    """Which source frame a decoded frame shows, read from its marker."""
    return sum(1 << b for b, cell in enumerate(_cells(img.shape[0])) if img[cell].mean() > 128)


def pred(label: str, score: float = 0.9) -> dict:
    return {"type": "prediction", "stream": "cam", "label": label, "score": score,
            "top_k": [{"label": label, "score": score}, {"label": "other", "score": 0.05}],
            "latency_ms": 42.0}


@dataclass
class Decoded:
    codec: str
    pix_fmt: str
    size: tuple[int, int]            # (width, height)
    rate: Fraction
    frames: list[np.ndarray]         # BGR


def decode(path: Path) -> Decoded:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(stream)]
        ctx = stream.codec_context
        return Decoded(ctx.name, ctx.pix_fmt, (ctx.width, ctx.height), stream.average_rate, frames)


def ffprobe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries",
         ("stream=codec_name,profile,pix_fmt,width,height,nb_read_frames,r_frame_rate,"
          "color_space,color_range:format=format_name"), "-of", "json", str(path)],
        check=True, capture_output=True, text=True, timeout=60).stdout
    info = json.loads(out)
    return {**info["streams"][0], "format_name": info["format"]["format_name"]}


def write_stream(sink: OverlaySink, n: int, *, h: int = 240, w: int = 320, fps: float = 25.0,
                 change_at: int | None = None) -> list[OverlayState]:
    """Open ``sink``, send n frames (label 'running', then 'jumping_jacks' from change_at), close.

    Returns the state each frame is drawn with (the sink adds the fps it measures).
    """
    sink.open()
    states = []
    sink.write(pred("running"))
    for i in range(n):
        if i == change_at:
            sink.write(pred("jumping_jacks", 0.7))
        state = sink.state("cam")
        states.append(replace(state, fps=fps) if i else state)
        sink.frame("cam", source(i, h, w), make_meta(i, i / fps))
    sink.close()
    return states


def expected(i: int, state: OverlayState, h: int = 240, w: int = 320) -> np.ndarray:
    """What frame i should look like: drawn as the sink draws it."""
    return draw_overlay(source(i, h, w), state)


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]


# --------------------------------------------------------------------------- H.264 with PyAV
def test_pyav_has_an_h264_encoder():
    encoders, why = overlay_module.h264_encoders()
    assert encoders and encoders[0] == "libx264", why


def test_writes_h264_yuv420p_with_every_frame_drawn_in_order(tmp_path, caplog):
    out = tmp_path / "annotated.mp4"
    sink = OverlaySink(str(out), show=False, queue_size=128)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        states = write_stream(sink, 40, change_at=20)
    assert warnings_of(caplog) == []
    assert sink.video_codec == "h264" and sink.dropped == 0 and sink.frames_written == {"cam": 40}

    video = decode(out)
    assert (video.codec, video.pix_fmt, video.size) == ("h264", "yuv420p", (320, 240))
    assert video.rate == 25
    assert len(video.frames) == 40
    assert [source_index(img) for img in video.frames] == list(range(40)), "frames lost or reordered"

    rect = headline_rect(240, 320)
    running = draw_overlay(source(0), update_state(OverlayState(), pred("running")))
    jumping = draw_overlay(source(0), update_state(OverlayState(), pred("jumping_jacks", 0.7)))
    for i, (img, state) in enumerate(zip(video.frames, states)):
        diff = np.abs(img.astype(int) - expected(i, state))
        assert diff.mean() < 4, f"frame {i} is not what was drawn (mean error {diff.mean():.1f})"
        flat = np.abs(img[-60:-24, 140:].astype(int) - SOURCE_BGR)    # colours (matrix, range)
        assert flat.mean() < 3, f"frame {i}: colours shifted by {flat.mean():.1f}"
        px, py, pw, ph = panel_rect(240, 320)
        assert np.abs(img[py:py + ph, px:px + pw].astype(int) - SOURCE_BGR).mean() > 40, \
            f"frame {i}: no panel"
        x, y, rw, rh = rect
        head = img[y:y + rh, x:x + rw].astype(int)
        to_running = np.abs(head - running[y:y + rh, x:x + rw]).mean()
        to_jumping = np.abs(head - jumping[y:y + rh, x:x + rw]).mean()
        if i < 20:
            assert to_running < to_jumping / 3, f"frame {i} should show 'running'"
        else:
            assert to_jumping < to_running / 3, f"frame {i} should show 'jumping jacks'"


def test_ffprobe_sees_browser_playable_h264(tmp_path):
    if shutil.which("ffprobe") is None:
        pytest.skip("ffprobe (FFmpeg) is not installed")
    out = tmp_path / "annotated.mp4"
    write_stream(OverlaySink(str(out), show=False, fps=30, queue_size=64), 30)
    info = ffprobe(out)
    assert info["codec_name"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["profile"] in ("Constrained Baseline", "Baseline", "Main", "High")
    assert (info["width"], info["height"], info["r_frame_rate"]) == (320, 240, "30/1")
    assert int(info["nb_read_frames"]) == 30
    assert "mp4" in info["format_name"].split(",")
    # tagged as converted (BT.601 matrix, limited range), so players convert back alike
    assert (info["color_space"], info["color_range"]) == ("smpte170m", "tv")


@pytest.mark.parametrize("h, w", [(241, 320), (240, 321), (241, 321)])
def test_odd_frame_size_is_padded_by_repeating_the_edge(tmp_path, h, w):
    """yuv420p needs even sizes: the last column/row is repeated, nothing is cut off."""
    out = tmp_path / "odd.mp4"
    sink = OverlaySink(str(out), show=False, fps=25, queue_size=64)
    sink.open()
    state = sink.state("cam")
    edge = (30, 220, 240)                                   # a colour only on the last row/column
    for i in range(10):
        img = source(i, h, w)
        img[-1, :], img[:, -1] = edge, edge
        sink.frame("cam", img, make_meta(i, i / 25))
    sink.close()

    video = decode(out)
    assert video.size == (w + w % 2, h + h % 2) and len(video.frames) == 10
    for i, img in enumerate(video.frames):
        drawn = source(i, h, w)
        drawn[-1, :], drawn[:, -1] = edge, edge
        drawn = draw_overlay(drawn, state)
        assert np.abs(img[:h, :w].astype(int) - drawn).mean() < 4, f"frame {i}"
        # the padded row/column repeats the edge, so the edge keeps its colour (4:2:0 chroma
        # is shared by the edge and its copy; black padding or a crop would lose it)
        lines = ([img[h - 1, 200:w - 4], img[h, 200:w - 4]] if h % 2 else []) + \
                ([img[150:h - 4, w - 1], img[150:h - 4, w]] if w % 2 else [])
        for line in lines:
            assert np.abs(line.astype(int) - edge).mean() < 12, f"frame {i}: edge lost"


@pytest.mark.parametrize("n, fps", [(3, None), (60, 30.0)])
def test_close_flushes_the_encoder_and_writes_the_trailer(tmp_path, n, fps):
    """Frames still inside the encoder (and fewer frames than the rate probe needs) get written."""
    out = tmp_path / "short.mp4"
    sink = OverlaySink(str(out), show=False, fps=fps, queue_size=128)
    write_stream(sink, n)
    assert sink.frames_written == {"cam": n}
    video = decode(out)                                    # no trailer: this fails to open
    assert video.codec == "h264"
    assert [source_index(img) for img in video.frames] == list(range(n))


def test_second_stream_gets_its_own_h264_file(tmp_path):
    sink = OverlaySink(str(tmp_path / "out.mp4"), show=False, fps=10, queue_size=64)
    sink.open()
    for i in range(6):
        sink.frame("a", source(i), make_meta(i, i / 10))
        sink.frame("b", source(i, 120, 160), make_meta(i, i / 10))
    sink.close()
    a, b = decode(tmp_path / "out.mp4"), decode(tmp_path / "out-b.mp4")
    assert (a.codec, a.size, len(a.frames)) == ("h264", (320, 240), 6)
    assert (b.codec, b.size, len(b.frames)) == ("h264", (160, 120), 6)


# --------------------------------------------------------------------------- codec choice
def test_codec_is_h264_or_a_fourcc():
    assert OverlaySink("x.mp4").codec == "h264"
    with pytest.raises(SinkError, match="use 'h264' or an OpenCV FourCC"):
        OverlaySink("x.mp4", codec="h265x")


def test_uppercase_h264_also_means_pyav(tmp_path):
    sink = OverlaySink(str(tmp_path / "o.mp4"), show=False, codec="H264", fps=25)
    write_stream(sink, 5)
    assert sink.video_codec == "h264" and decode(tmp_path / "o.mp4").codec == "h264"


def test_explicit_fourcc_writes_with_opencv_without_a_warning(tmp_path, caplog):
    out = tmp_path / "o.mp4"
    sink = OverlaySink(str(out), show=False, codec="mp4v", fps=25, queue_size=64)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        write_stream(sink, 12)
    assert warnings_of(caplog) == [] and sink.video_codec == "mp4v"
    video = decode(out)
    assert video.codec == "mpeg4" and len(video.frames) == 12


# --------------------------------------------------------------------------- the fallback
def _no_pyav(monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)            # `import av` raises ImportError


def _no_h264_encoder(monkeypatch):
    monkeypatch.setattr(overlay_module, "H264_ENCODERS", ("no-such-h264-encoder",))


@pytest.mark.parametrize("break_h264, reason", [
    (_no_pyav, "PyAV is not installed"),
    (_no_h264_encoder, "no H.264 encoder"),
])
def test_without_h264_it_warns_once_and_writes_playable_mp4v(tmp_path, monkeypatch, caplog,
                                                              break_h264, reason):
    break_h264(monkeypatch)
    out = tmp_path / "annotated.mp4"
    sink = OverlaySink(str(out), show=False, queue_size=128)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        states = write_stream(sink, 20)
    warnings = warnings_of(caplog)
    assert len(warnings) == 1, warnings
    assert "cannot write H.264" in warnings[0] and reason in warnings[0]
    assert "mp4v" in warnings[0]
    assert sink.video_codec == "mp4v" and sink.frames_written == {"cam": 20}
    monkeypatch.undo()                                     # PyAV back, to inspect the file

    video = decode(out)
    assert (video.codec, video.size, len(video.frames)) == ("mpeg4", (320, 240), 20)
    cap = cv2.VideoCapture(str(out))                       # OpenCV plays it too
    ok, first = cap.read()
    cap.release()
    assert ok and np.abs(first.astype(int) - expected(0, states[0])).mean() < 6
    assert [source_index(img) for img in video.frames] == list(range(20))


def test_no_h264_and_no_opencv_writer_fails_at_open_naming_the_file(tmp_path, monkeypatch):
    _no_h264_encoder(monkeypatch)
    target = tmp_path / "out.unknown-container"
    with pytest.raises(SinkError, match=r"cannot write video to .*out\.unknown-container: "
                                        r"no H\.264 .*OpenCV cannot open a writer"):
        OverlaySink(str(target), show=False).open()
    assert not target.exists()
