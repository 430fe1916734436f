"""Drawing the recognizer's state onto video frames (pure functions, no threads or I/O).

``OverlayState`` is an immutable snapshot of what one stream's panel shows;
``update_state`` folds a sink event (``prediction``, ``change``, ``status``,
``heartbeat``) into it and ``draw_overlay`` returns an annotated copy of a BGR
frame: the label in large type, a confidence bar, the top three labels with
small bars, frames per second, latency, and the stream's name and state. Sizes
scale with the frame height so the panel reads on 240p as on 1080p.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import cv2
import numpy as np

TOP_N = 3                               # rows of the top-k list

# Colours, BGR.
PANEL_BG = (24, 24, 24)
PANEL_ALPHA = 0.68                      # opacity of the panel background
TEXT = (255, 255, 255)
TEXT_DIM = (175, 175, 175)
TRACK = (72, 72, 72)                    # the empty part of a bar
BAR_HIGH = (80, 200, 80)                # green: confident
BAR_MID = (0, 190, 255)                 # amber
BAR_LOW = (60, 60, 230)                 # red: barely above chance
BAR_UNCERTAIN = (150, 150, 150)         # grey: the smoother is not sure
BAR_TOPK = (230, 170, 70)               # blue: the top-k rows
STATE_COLOURS: Mapping[str, tuple[int, int, int]] = {
    "connected": (80, 200, 80),
    "recovered": (80, 200, 80),
    "lost": (40, 40, 235),
    "reconnecting": (40, 40, 235),
    "error": (40, 40, 235),
    "ended": (160, 160, 160),
}
STATE_TEXT: Mapping[str, str] = {"connected": "LIVE", "recovered": "LIVE"}

FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_LABEL = cv2.FONT_HERSHEY_DUPLEX


@dataclass(frozen=True)
class OverlayState:
    """What one stream's panel shows. Immutable: ``update_state`` returns a new one."""

    stream: str = ""
    label: Optional[str] = None                 # the (smoothed) label; None before the first
    score: float = 0.0
    top_k: tuple[tuple[str, float], ...] = ()   # at most TOP_N (label, score), best first
    fps: Optional[float] = None
    latency_ms: Optional[float] = None
    stream_state: Optional[str] = None          # connected | lost | reconnecting | recovered | ended
    uncertain: bool = False


def _float(value: Any, default: Optional[float]) -> Optional[float]:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _top_k(event: Mapping[str, Any]) -> tuple[tuple[str, float], ...]:
    rows = []
    for item in event.get("top_k") or ():
        if isinstance(item, Mapping) and "label" in item:
            rows.append((str(item["label"]), _float(item.get("score"), 0.0) or 0.0))
        if len(rows) == TOP_N:
            break
    return tuple(rows)


def update_state(state: OverlayState, event: Mapping[str, Any]) -> OverlayState:
    """The state after ``event``; events of other types leave it unchanged."""
    kind = event.get("type")
    changes: dict[str, Any] = {}
    if not state.stream and event.get("stream"):
        changes["stream"] = str(event["stream"])
    if kind in ("prediction", "change") and event.get("label") is not None:
        changes["label"] = str(event["label"])
        changes["score"] = _float(event.get("score"), 0.0)
        changes["uncertain"] = bool(event.get("uncertain", False))
        top = _top_k(event)
        if top or kind == "prediction":
            changes["top_k"] = top or ((changes["label"], changes["score"]),)
        if event.get("latency_ms") is not None:
            changes["latency_ms"] = _float(event["latency_ms"], state.latency_ms)
    elif kind == "status" and event.get("state"):
        changes["stream_state"] = str(event["state"])
    elif kind == "heartbeat":
        if event.get("fps") is not None:
            changes["fps"] = _float(event["fps"], state.fps)
        if event.get("latency_ms_p50") is not None:
            changes["latency_ms"] = _float(event["latency_ms_p50"], state.latency_ms)
    if not changes:
        return state
    return dataclasses.replace(state, **changes)


# --------------------------------------------------------------------------- drawing
@dataclass(frozen=True)
class _Layout:
    unit: float
    margin: int
    pad: int
    gap: int
    label_scale: float
    label_thick: int
    small_scale: float
    small_thick: int
    bar_h: int
    small_bar_h: int
    panel_w: int


def layout_for(height: int, width: int) -> _Layout:
    """Sizes for a frame: one unit is 1/720 of the height (clamped for tiny and huge frames)."""
    u = min(max(height / 720.0, 0.45), 2.0)
    margin = max(4, round(12 * u))
    panel_w = min(width - 2 * margin, max(int(0.38 * width), int(360 * u)))
    return _Layout(
        unit=u, margin=margin, pad=max(4, round(12 * u)), gap=max(3, round(8 * u)),
        label_scale=1.3 * u, label_thick=max(1, round(2 * u)),
        small_scale=max(0.35, 0.6 * u), small_thick=max(1, round(1.2 * u)),
        bar_h=max(5, round(14 * u)), small_bar_h=max(3, round(7 * u)), panel_w=max(1, panel_w))


def _text_size(text: str, font: int, scale: float, thick: int) -> tuple[int, int, int]:
    (w, h), base = cv2.getTextSize(text, font, scale, thick)
    return w, h, base


def fit_text(text: str, max_width: int, font: int, scale: float, thick: int,
             min_scale_ratio: float = 0.65) -> tuple[str, float]:
    """Shrink ``text`` (down to ``min_scale_ratio``) then cut it with '...' to fit."""
    if max_width <= 0:
        return "", scale
    for s in (scale, scale * 0.85, scale * min_scale_ratio):
        if _text_size(text, font, s, thick)[0] <= max_width:
            return text, s
    s = scale * min_scale_ratio
    cut = text
    while cut and _text_size(cut + "...", font, s, thick)[0] > max_width:
        cut = cut[:-1]
    return (cut + "..." if cut else ""), s


def bar_colour(score: float, uncertain: bool) -> tuple[int, int, int]:
    if uncertain:
        return BAR_UNCERTAIN
    if score >= 0.6:
        return BAR_HIGH
    if score >= 0.3:
        return BAR_MID
    return BAR_LOW


def _bar(img: np.ndarray, x: int, y: int, w: int, h: int, frac: float,
         colour: tuple[int, int, int]) -> None:
    cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), TRACK, cv2.FILLED)
    filled = int(round(w * min(max(frac, 0.0), 1.0)))
    if filled > 0:
        cv2.rectangle(img, (x, y), (x + filled - 1, y + h - 1), colour, cv2.FILLED)


def _put(img: np.ndarray, text: str, x: int, baseline_y: int, font: int, scale: float,
         colour: tuple[int, int, int], thick: int) -> None:
    if text:
        cv2.putText(img, text, (x, baseline_y), font, scale, colour, thick, cv2.LINE_AA)


def panel_height(height: int, width: int) -> int:
    """Height in pixels of the panel ``draw_overlay`` draws on a frame of this size."""
    lay = layout_for(height, width)
    _, lh, lb = _text_size("Ag", FONT_LABEL, lay.label_scale, lay.label_thick)
    _, sh, sb = _text_size("Ag", FONT, lay.small_scale, lay.small_thick)
    row = max(sh + sb, lay.small_bar_h) + lay.gap
    return lay.pad + lh + lb + lay.gap + lay.bar_h + lay.gap + TOP_N * row + 2 * (sh + sb + lay.gap) + lay.pad


def panel_rect(height: int, width: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the panel on a frame of this size."""
    lay = layout_for(height, width)
    return (lay.margin, lay.margin, lay.panel_w,
            max(0, min(panel_height(height, width), height - 2 * lay.margin)))


def headline_rect(height: int, width: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the panel's top part: the label and the confidence bar."""
    lay = layout_for(height, width)
    _, lh, lb = _text_size("Ag", FONT_LABEL, lay.label_scale, lay.label_thick)
    x, y, w, h = panel_rect(height, width)
    return x, y, w, min(h, lay.pad + lh + lb + lay.gap + lay.bar_h + lay.gap)


def draw_overlay(frame_bgr: np.ndarray, state: OverlayState) -> np.ndarray:
    """An annotated copy of ``frame_bgr`` (H x W x 3 uint8); the input is left untouched."""
    if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 BGR frame, got shape {frame_bgr.shape}")
    out = np.ascontiguousarray(frame_bgr).copy()
    height, width = out.shape[:2]
    lay = layout_for(height, width)
    x0, y0, pw, ph = panel_rect(height, width)
    if pw < 8 or ph < 8:
        return out
    roi = out[y0:y0 + ph, x0:x0 + pw]
    bg = np.empty_like(roi)
    bg[:] = PANEL_BG
    cv2.addWeighted(bg, PANEL_ALPHA, roi, 1.0 - PANEL_ALPHA, 0.0, dst=roi)

    inner_x = x0 + lay.pad
    inner_w = pw - 2 * lay.pad
    y = y0 + lay.pad

    # The label, large; grey with a question mark when uncertain; a placeholder before the first.
    if state.label is None:
        text, colour = "waiting...", TEXT_DIM
    elif state.uncertain:
        text, colour = f"{state.label.replace('_', ' ')} ?", TEXT_DIM
    else:
        text, colour = state.label.replace("_", " "), TEXT
    text, scale = fit_text(text, inner_w, FONT_LABEL, lay.label_scale, lay.label_thick)
    _, lh, lb = _text_size("Ag", FONT_LABEL, lay.label_scale, lay.label_thick)
    _put(out, text, inner_x, y + lh, FONT_LABEL, scale, colour, lay.label_thick)
    y += lh + lb + lay.gap

    # Confidence bar with the percentage to its right.
    pct = f"{state.score * 100:3.0f}%" if state.label is not None else ""
    pw_txt, sh, sb = _text_size("100%", FONT, lay.small_scale, lay.small_thick)
    bar_w = max(1, inner_w - pw_txt - lay.gap)
    _bar(out, inner_x, y, bar_w, lay.bar_h, state.score if state.label is not None else 0.0,
         bar_colour(state.score, state.uncertain))
    _put(out, pct, inner_x + bar_w + lay.gap, y + (lay.bar_h + sh) // 2, FONT, lay.small_scale,
         TEXT, lay.small_thick)
    y += lay.bar_h + lay.gap

    # Top-k rows: the name on the left, a small bar on the right.
    row_h = max(sh + sb, lay.small_bar_h) + lay.gap
    small_bar_w = max(1, int(inner_w * 0.38))
    name_w = inner_w - small_bar_w - lay.gap
    for label, score in state.top_k[:TOP_N]:
        name, s = fit_text(f"{label.replace('_', ' ')}", name_w, FONT, lay.small_scale,
                           lay.small_thick)
        _put(out, name, inner_x, y + sh, FONT, s, TEXT_DIM, lay.small_thick)
        bar_y = y + max(0, (sh - lay.small_bar_h) // 2 + 1)
        _bar(out, inner_x + name_w + lay.gap, bar_y, small_bar_w, lay.small_bar_h, score, BAR_TOPK)
        y += row_h
    y += (TOP_N - len(state.top_k[:TOP_N])) * row_h

    # Stream name and state.
    line_h = sh + sb + lay.gap
    state_text = ""
    if state.stream_state:
        state_text = STATE_TEXT.get(state.stream_state, state.stream_state.upper())
    st_w = _text_size(state_text, FONT, lay.small_scale, lay.small_thick + 1)[0] if state_text else 0
    name, s = fit_text(state.stream, max(0, inner_w - st_w - lay.gap), FONT, lay.small_scale,
                       lay.small_thick)
    _put(out, name, inner_x, y + sh, FONT, s, TEXT_DIM, lay.small_thick)
    if state_text:
        _put(out, state_text, inner_x + inner_w - st_w, y + sh, FONT, lay.small_scale,
             STATE_COLOURS.get(state.stream_state or "", TEXT), lay.small_thick + 1)
    y += line_h

    # Frame rate and latency.
    parts = []
    if state.fps is not None:
        parts.append(f"{state.fps:.1f} fps")
    if state.latency_ms is not None:
        parts.append(f"{state.latency_ms:.0f} ms latency")
    stats, s = fit_text("  ".join(parts), inner_w, FONT, lay.small_scale, lay.small_thick)
    _put(out, stats, inner_x, y + sh, FONT, s, TEXT_DIM, lay.small_thick)
    return out
