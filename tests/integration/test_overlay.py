"""The video overlay: drawing (tables), the annotated file, the window under Xvfb, display detection."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest

from realtime.core.errors import SinkError
from realtime.sinks.overlay.draw import (BAR_HIGH, BAR_LOW, BAR_MID, BAR_TOPK, BAR_UNCERTAIN, TEXT,
                              OverlayState, draw_overlay, headline_rect, panel_rect, update_state)
from realtime.sinks import build_sink, parse_sink_spec
from realtime.sinks.overlay.display import display_status
from realtime.sinks.overlay.sink import OverlaySink, estimate_fps
from realtime.config import build_config

from conftest import make_meta

REPO = Path(__file__).resolve().parents[2]
SOURCE_BGR = (40, 90, 160)          # the synthetic frames' colour (no overlay colour is close)


def frame(h: int = 240, w: int = 320, colour=SOURCE_BGR) -> np.ndarray:
    return np.full((h, w, 3), colour, np.uint8)


def crop(img: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = rect
    return img[y:y + h, x:x + w]


def count(img: np.ndarray, bgr) -> int:
    return int(np.all(img == np.array(bgr, np.uint8), axis=-1).sum())


def pred(label: str, score: float = 0.9, stream: str = "cam", **extra) -> dict:
    top = [{"label": label, "score": score}, {"label": "other", "score": 0.05},
           {"label": "third", "score": 0.025}, {"label": "fourth", "score": 0.0}]
    return {"type": "prediction", "stream": stream, "label": label, "score": score, "top_k": top,
            "latency_ms": 42.0, **extra}


RUNNING = OverlayState(stream="cam", label="running", score=0.9,
                       top_k=(("running", 0.9), ("other", 0.05), ("third", 0.025)), latency_ms=42.0)


# --------------------------------------------------------------------------- update_state
@pytest.mark.parametrize("event, expected", [
    (pred("running"), dict(label="running", score=0.9, latency_ms=42.0, uncertain=False,
                           top_k=(("running", 0.9), ("other", 0.05), ("third", 0.025)))),
    (pred("walk", 0.4, uncertain=True), dict(label="walk", score=0.4, uncertain=True)),
    ({"type": "prediction", "stream": "cam", "label": "solo", "score": 0.7},
     dict(label="solo", top_k=(("solo", 0.7),))),
    ({"type": "change", "stream": "cam", "label": "jump", "score": 0.8, "previous": "run"},
     dict(label="jump", score=0.8, top_k=())),
    ({"type": "status", "stream": "cam", "state": "reconnecting", "source": "x"},
     dict(stream_state="reconnecting", label=None)),
    ({"type": "heartbeat", "stream": "cam", "fps": 29.5, "latency_ms_p50": 120.0},
     dict(fps=29.5, latency_ms=120.0)),
    ({"type": "something_new", "stream": "cam"}, dict(label=None, fps=None)),
])
def test_update_state_folds_events(event, expected):
    state = update_state(OverlayState(), event)
    assert state.stream == "cam"
    for key, value in expected.items():
        got = getattr(state, key)
        assert got == (pytest.approx(value) if isinstance(value, float) else value), key


def test_update_state_is_pure_and_keeps_other_fields():
    base = update_state(OverlayState(), pred("running"))
    after = update_state(base, {"type": "status", "stream": "cam", "state": "lost"})
    assert base.stream_state is None                       # the input is not changed
    assert (after.label, after.stream_state) == ("running", "lost")
    assert update_state(after, {"type": "unknown"}) is after


# --------------------------------------------------------------------------- drawing
def test_draw_returns_a_copy_and_draws_only_the_panel():
    src = frame()
    out = draw_overlay(src, RUNNING)
    assert out is not src and out.shape == src.shape and out.dtype == np.uint8
    assert np.all(src == SOURCE_BGR), "the input frame must not be modified"
    x, y, w, h = panel_rect(*src.shape[:2])
    assert (np.abs(crop(out, (x, y, w, h)).astype(int) - SOURCE_BGR).sum(axis=-1) > 30).mean() > 0.9
    outside = out.copy()
    outside[y:y + h, x:x + w] = SOURCE_BGR
    assert np.all(outside == SOURCE_BGR), "nothing is drawn outside the panel"


@pytest.mark.parametrize("a, b", [
    (RUNNING, OverlayState(stream="cam")),                                    # label vs waiting
    (RUNNING, replace(RUNNING, label="jumping_jacks")),  # two labels
    (RUNNING, replace(RUNNING, uncertain=True)),       # uncertain
])
def test_headline_shows_the_label_and_its_state(a, b):
    img = frame()
    rect = headline_rect(*img.shape[:2])
    diff = np.abs(crop(draw_overlay(img, a), rect).astype(int) - crop(draw_overlay(img, b), rect))
    assert (diff.sum(axis=-1) > 60).sum() > 50


@pytest.mark.parametrize("state, present, absent", [
    (RUNNING, [TEXT, BAR_HIGH], [BAR_UNCERTAIN]),
    (replace(RUNNING, uncertain=True), [BAR_UNCERTAIN], [BAR_HIGH]),
    (replace(RUNNING, score=0.45), [BAR_MID], [BAR_HIGH, BAR_LOW]),
    (replace(RUNNING, score=0.1), [BAR_LOW], [BAR_HIGH, BAR_MID]),
])
def test_confidence_bar_colour(state, present, absent):
    out = crop(draw_overlay(frame(), state), headline_rect(240, 320))
    for colour in present:
        assert count(out, colour) > 20, colour
    for colour in absent:
        assert count(out, colour) == 0, colour


@pytest.mark.parametrize("h, w", [(240, 320), (720, 1280), (1080, 1920)])
def test_bars_scale_with_score(h, w):
    img = frame(h, w)
    filled = [count(draw_overlay(img, replace(RUNNING, score=s)), BAR_HIGH)
              for s in (0.6, 0.8, 1.0)]
    assert filled[0] < filled[1] < filled[2]
    assert filled[0] / filled[2] == pytest.approx(0.6, abs=0.05)
    topk = [count(draw_overlay(img, OverlayState(stream="c", label="x", score=0.5,
                                                 top_k=(("x", s),))), BAR_TOPK)
            for s in (0.25, 0.5, 1.0)]
    assert topk[0] / topk[2] == pytest.approx(0.25, abs=0.05)
    assert topk[1] / topk[2] == pytest.approx(0.5, abs=0.05)


def _text_height(img: np.ndarray) -> int:
    rows = np.where(np.all(crop(img, headline_rect(*img.shape[:2])) == TEXT, axis=-1).any(axis=1))[0]
    return int(rows.max() - rows.min() + 1)


def test_fonts_scale_with_frame_height():
    small = _text_height(draw_overlay(frame(240, 320), RUNNING))
    large = _text_height(draw_overlay(frame(1080, 1920), RUNNING))
    assert small >= 8, "the label must stay readable on 240p"
    assert large / small > 2.5
    for h, w in ((240, 320), (1080, 1920)):                  # the panel fits, leaving most of the frame
        x, y, pw, ph = panel_rect(h, w)
        assert y + ph < 0.62 * h and x + pw <= w


@pytest.mark.parametrize("h, w", [(16, 16), (48, 64), (640, 360), (240, 1200), (2160, 3840)])
def test_any_frame_size_is_drawn_without_error(h, w):
    long_label = OverlayState(stream="a-very-long-stream-name-" * 3, label="x" * 200, score=1.5,
                              top_k=(("y" * 100, -1.0),) * 3, fps=1e6, latency_ms=-3,
                              stream_state="reconnecting")
    assert draw_overlay(frame(h, w), long_label).shape == (h, w, 3)


def test_reconnecting_is_drawn_in_red():
    lost = replace(RUNNING, stream_state="reconnecting")
    live = replace(RUNNING, stream_state="connected")
    red = (40, 40, 235)
    assert count(draw_overlay(frame(480, 640), lost), red) > 20
    assert count(draw_overlay(frame(480, 640), live), red) == 0


@pytest.mark.parametrize("timestamps, fps", [
    ([0.0, 0.04, 0.08, 0.12], 25.0),
    ([0.0, 1 / 30, 2 / 30, 0.2, 0.2 + 1 / 30], 30.0),   # one dropped frame does not count
    ([1.0], None), ([0.0, 5.0], None), ([], None),
])
def test_estimate_fps(timestamps, fps):
    got = estimate_fps(timestamps)
    assert got == (None if fps is None else pytest.approx(fps, rel=1e-3))


# --------------------------------------------------------------------------- the annotated file
def _read_video(path: Path) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return frames, fps


def test_annotated_file_has_every_frame_with_the_current_label(tmp_path):
    out = tmp_path / "video" / "annotated.mp4"
    sink = OverlaySink(str(out), show=False, queue_size=128)
    sink.open()
    src = frame()
    sink.write({"type": "status", "stream": "cam", "state": "connected", "source": "x"})
    for i in range(60):
        if i == 0:
            sink.write(pred("running"))
        if i == 30:
            sink.write(pred("jumping_jacks", 0.7))
        sink.frame("cam", src, make_meta(i, i / 25))       # 25 fps on the stream's clock
    sink.close()
    assert sink.dropped == 0 and sink.frames_written == {"cam": 60}

    frames, fps = _read_video(out)
    assert len(frames) == 60 and fps == pytest.approx(25.0, abs=0.01)
    rect = headline_rect(240, 320)
    running = crop(draw_overlay(src, update_state(OverlayState(), pred("running"))), rect).astype(int)
    jumping = crop(draw_overlay(src, update_state(OverlayState(), pred("jumping_jacks", 0.7))),
                   rect).astype(int)
    for i, img in enumerate(frames):
        panel = crop(img, panel_rect(240, 320)).astype(int)
        assert np.abs(panel - SOURCE_BGR).mean() > 40, f"frame {i}: no panel drawn"
        assert np.abs(img[-20:, -60:].astype(int) - SOURCE_BGR).max() < 12, "the video is the source"
        headline = crop(img, rect).astype(int)
        to_running, to_jumping = np.abs(headline - running).mean(), np.abs(headline - jumping).mean()
        if i < 30:
            assert to_running < to_jumping / 3, f"frame {i} should show 'running'"
        else:
            assert to_jumping < to_running / 3, f"frame {i} should show 'jumping jacks'"


def test_second_stream_gets_its_own_file(tmp_path):
    sink = OverlaySink(str(tmp_path / "out.mp4"), show=False, fps=10, queue_size=64)
    sink.open()
    for i in range(5):
        sink.frame("a", frame(), make_meta(i, i / 10))
        sink.frame("b", frame(120, 160), make_meta(i, i / 10))
    sink.close()
    assert len(_read_video(tmp_path / "out.mp4")[0]) == 5
    frames, _ = _read_video(tmp_path / "out-b.mp4")
    assert len(frames) == 5 and frames[0].shape == (120, 160, 3)


def test_writer_queue_is_bounded_and_counts_drops(tmp_path):
    sink = OverlaySink(str(tmp_path / "o.mp4"), show=False, queue_size=4)
    sink.open()
    big = frame(720, 1280)
    for i in range(200):                                  # far faster than the writer
        sink.frame("cam", big, make_meta(i, i / 30))
    sink.close()
    written = sink.frames_written["cam"]
    assert sink.dropped > 0 and written + sink.dropped == 200
    assert len(_read_video(tmp_path / "o.mp4")[0]) == written


@pytest.mark.parametrize("make_path", [
    lambda tmp: tmp / "a-file.txt" / "out.mp4",            # its "directory" is a file
    lambda tmp: tmp,                                       # a directory
    lambda tmp: tmp / "out.unknown-container",            # no writer for this file type
])
def test_unwritable_path_fails_at_open_naming_it(tmp_path, make_path):
    (tmp_path / "a-file.txt").write_text("x")
    target = make_path(tmp_path)
    sink = OverlaySink(str(target), show=False)
    with pytest.raises(SinkError, match="cannot write video to " + str(target).replace(".", r"\.")):
        sink.open()


def test_registry_builds_the_overlay_sink(tmp_path):
    spec = parse_sink_spec(f"overlay:{tmp_path / 'o.mp4'}")
    config = build_config({"sinks": [{**spec, "codec": "MJPG"}]})
    sink = build_sink(config.sinks[0])
    assert isinstance(sink, OverlaySink) and sink.path == str(tmp_path / "o.mp4")
    assert sink.wants_frames and sink.codec == "MJPG"


def test_pipeline_writes_an_annotated_video(make_video, tmp_path):
    from realtime.config import load_config
    from realtime.stream.pipeline import Pipeline
    from support.fakes import ScriptedClassifier

    clip = make_video(frames=30, fps=30.0)
    out = tmp_path / "annotated.mp4"
    cfg = load_config(None, ["sinks=[]", f"source.uri={clip}", "source.pace=realtime",
                             "window.stride_seconds=0.25"])
    sink = OverlaySink(str(out), show=False, queue_size=64)
    Pipeline(cfg, classifier=ScriptedClassifier(num_frames=4, window_seconds=0.25),
             sinks=[sink]).run(duration=10)
    frames, fps = _read_video(out)
    assert len(frames) >= 25 and fps == pytest.approx(30.0, abs=1.0)
    assert list(sink.frames_written) == ["clip"]
    assert sink.state("clip").label == "a"
    assert sink.video_codec == "h264"


# --------------------------------------------------------------------------- no display
@pytest.fixture
def no_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)

    def forbidden(*args, **kwargs):
        raise AssertionError("cv2 GUI called without a display")
    for name in ("imshow", "namedWindow", "waitKey"):
        monkeypatch.setattr(cv2, name, forbidden)


def test_auto_show_without_display_disables_the_overlay(no_display, caplog):
    sink = OverlaySink(None, show=None)
    with caplog.at_level("WARNING", logger="realtime.sinks.overlay.sink"):
        sink.open()
    assert "no display and no output file: overlay disabled" in caplog.text
    assert sink.wants_frames is False and not sink.showing
    sink.write(pred("running"))
    sink.frame("cam", frame(), make_meta(0, 0.0))
    assert sink.main_thread_step() is True
    sink.close()


def test_show_true_without_display_warns_and_still_writes(no_display, caplog, tmp_path):
    sink = OverlaySink(str(tmp_path / "o.mp4"), show=True, fps=30)
    with caplog.at_level("WARNING", logger="realtime.sinks.overlay.sink"):
        sink.open()
    assert "show=True but neither DISPLAY nor WAYLAND_DISPLAY is set" in caplog.text
    sink.frame("cam", frame(), make_meta(0, 0.0))
    assert sink.main_thread_step() is True
    sink.close()
    assert sink.frames_written == {"cam": 1}


@pytest.mark.parametrize("env, reason", [
    ({"DISPLAY": ":987"}, "no X server answers on DISPLAY=:987"),
    ({"DISPLAY": "nonsense"}, "no X server answers"),
    ({"WAYLAND_DISPLAY": "wayland-77"}, "OpenCV's Qt can only use X11"),
])
def test_display_detection_needs_a_server_that_answers(monkeypatch, env, reason):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if "Qt" in reason and not display_status_framework().upper().startswith("QT"):
        pytest.skip("OpenCV here is not built with Qt")
    ok, why = display_status()
    assert not ok and reason in why


def display_status_framework() -> str:
    from realtime.sinks.overlay.display import gui_framework
    return gui_framework()


# --------------------------------------------------------------------------- a real window under Xvfb
def _free_display() -> int:
    for n in range(91, 400):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    raise RuntimeError("no free X display number")


@pytest.fixture
def xvfb() -> Iterator[str]:
    """A virtual X server; yields its DISPLAY name."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed")
    for _ in range(5):
        n = _free_display()
        proc = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", "1280x720x24", "-nolisten", "tcp"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and proc.poll() is None:
            if Path(f"/tmp/.X11-unix/X{n}").exists():
                break
            time.sleep(0.05)
        if proc.poll() is None and Path(f"/tmp/.X11-unix/X{n}").exists():
            break
        proc.kill()
        proc.wait()
    else:
        pytest.fail("Xvfb did not start")
    try:
        yield f":{n}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


WINDOW_SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import cv2, numpy as np
    from realtime.sinks.overlay.sink import OverlaySink
    from realtime.core.types import FrameMeta

    ready, done = Path(sys.argv[1]), Path(sys.argv[2])
    sink = OverlaySink(None, show=True, title="rt")
    sink.open()
    assert sink.showing, "a display was expected"
    sink.write({"type": "status", "stream": "cam", "state": "connected", "source": "x"})
    sink.write({"type": "prediction", "stream": "cam", "label": "zebra_crossing", "score": 0.9,
                "top_k": [{"label": "zebra_crossing", "score": 0.9}], "latency_ms": 42.0})
    img = np.full((240, 320, 3), (40, 90, 160), np.uint8)
    t0, i = time.monotonic(), 0
    while not done.exists():
        sink.frame("cam", img, FrameMeta(i, i / 30, i / 30, 0.0))
        i += 1
        assert sink.main_thread_step() is True
        if i == 30:
            ready.touch()
        assert time.monotonic() - t0 < 60, "the test never took its screenshot"
        time.sleep(0.03)
    cv2.destroyWindow("rt - cam")                 # as if the user closed the window
    print("after close:", sink.main_thread_step())
    sink.close()
""")


def test_window_shows_the_overlay_under_xvfb(xvfb, tmp_path):
    from PIL import ImageGrab, features
    if not features.check("xcb"):
        pytest.skip("Pillow was built without XCB: cannot take a screenshot")
    ready, done = tmp_path / "ready", tmp_path / "done"
    env = {**os.environ, "DISPLAY": xvfb, "PYTHONPATH": str(REPO)}
    env.pop("WAYLAND_DISPLAY", None)
    # A subprocess: if the GUI aborted (SIGABRT), it must not take pytest with it.
    proc = subprocess.Popen([sys.executable, "-c", WINDOW_SCRIPT, str(ready), str(done)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), f"the window never came up: {proc.poll()} {proc.stderr.read() if proc.poll() is not None else ''}"
        time.sleep(0.3)                                   # a few more repaints
        shot = cv2.cvtColor(np.asarray(ImageGrab.grab(xdisplay=xvfb).convert("RGB")), cv2.COLOR_RGB2BGR)
    finally:
        done.touch()
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert "after close: False" in out, "closing the window must stop the pipeline"
    cv2.imwrite(str(tmp_path / "screenshot.png"), shot)

    assert count(shot, SOURCE_BGR) > 0.5 * 320 * 240, "the frame is on screen"
    src = frame()
    rect = headline_rect(240, 320)
    state = OverlayState(stream="cam", label="zebra_crossing", score=0.9)
    expected = crop(draw_overlay(src, state), rect)
    other = crop(draw_overlay(src, OverlayState(stream="cam", label="walking", score=0.9)), rect)
    match = cv2.minMaxLoc(cv2.matchTemplate(shot, expected, cv2.TM_SQDIFF_NORMED))[0]
    mismatch = cv2.minMaxLoc(cv2.matchTemplate(shot, other, cv2.TM_SQDIFF_NORMED))[0]
    assert match < 0.01, f"the label panel is not on screen (best match {match:.4f})"
    assert mismatch > 10 * match
    assert count(shot, BAR_HIGH) >= count(expected, BAR_HIGH) * 0.9


def test_default_config_writes_h264(tmp_path):
    sink = build_sink(build_config({"sinks": [parse_sink_spec(f"overlay:{tmp_path / 'o.mp4'}")]}).sinks[0])
    assert sink.codec == "h264"
