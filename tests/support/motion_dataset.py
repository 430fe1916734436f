"""Synthetic activity clips whose classes differ only in motion.

Every clip shows one textured sprite (a random irregular polygon filled with
stripes and carrying an off-centre dot, in random colours) over a random static
textured background, with a little sensor noise. The class decides only how the
sprite moves:

``moving_left`` / ``moving_right`` / ``moving_up`` / ``moving_down``
    translation at 25-40 % of the frame's width / height per second (with a slight
    random perpendicular drift);
``rotating_clockwise`` / ``rotating_anticlockwise``
    rotation about the sprite's centre at 90-180 deg/s (with a slow random drift);
``growing`` / ``shrinking``
    scale going from ~0.6 to ~1.4 over the clip, or back.

Start positions, speeds, shapes, colours and backgrounds are drawn per clip, so
any single frame of one class could have come from another: only the order of
the frames tells them apart. Clips are written as mp4 (``mp4v``) with
``cv2.VideoWriter``; everything is deterministic for a seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

MOTIONS: tuple[str, ...] = (
    "moving_left", "moving_right", "moving_up", "moving_down",
    "rotating_clockwise", "rotating_anticlockwise", "growing", "shrinking",
)
"""Every motion class the generator can draw (the folder names of a dataset)."""

SIX_CLASSES: tuple[str, ...] = MOTIONS[:6]
"""Left / right / up / down / clockwise / anticlockwise."""

FPS = 25.0
SIZE = (160, 120)          # (width, height)
SPRITE = 96                # sprite canvas side in pixels (drawn large, scaled down when placed)

_TRANSLATIONS = {"moving_left": (-1.0, 0.0), "moving_right": (1.0, 0.0),
                 "moving_up": (0.0, -1.0), "moving_down": (0.0, 1.0)}


@dataclass(frozen=True)
class Sprite:
    """An RGBA-like sprite: BGR image and float alpha in [0, 1], both SPRITE x SPRITE."""

    image: np.ndarray
    alpha: np.ndarray


def _random_colour(rng: np.random.Generator, low: int = 0, high: int = 256) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(low, high, 3))  # type: ignore[return-value]


def make_background(rng: np.random.Generator, size: tuple[int, int] = SIZE) -> np.ndarray:
    """A static BGR background: a colour gradient plus blurred random blobs and rectangles."""
    w, h = size
    c0 = np.array(_random_colour(rng, 20, 200), np.float32)
    c1 = np.array(_random_colour(rng, 20, 200), np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = ((xx - w / 2) * math.cos(angle) + (yy - h / 2) * math.sin(angle)) / max(w, h) + 0.5
    bg = c0 + np.clip(t, 0, 1)[..., None] * (c1 - c0)
    for _ in range(int(rng.integers(4, 10))):
        colour = np.array(_random_colour(rng, 0, 256), np.float32)
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        if rng.random() < 0.5:
            r = int(rng.integers(4, 20))
            cv2.circle(bg, (x, y), r, colour.tolist(), -1)
        else:
            cv2.rectangle(bg, (x, y), (x + int(rng.integers(5, 30)), y + int(rng.integers(5, 30))),
                          colour.tolist(), -1)
    noise = rng.normal(0, 12, (h // 4 + 1, w // 4 + 1, 3)).astype(np.float32)
    bg += cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    bg = cv2.GaussianBlur(bg, (0, 0), 1.5)
    return np.clip(bg, 0, 255).astype(np.uint8)


def make_sprite(rng: np.random.Generator) -> Sprite:
    """A random irregular polygon with stripes and an off-centre dot, on a SPRITE x SPRITE canvas."""
    n = int(rng.integers(4, 8))
    step = 2 * math.pi / n
    angles = rng.uniform(0, 2 * math.pi) + step * (np.arange(n) + rng.uniform(-0.3, 0.3, n))
    radii = rng.uniform(0.6, 1.0, n) * (SPRITE / 2 - 2)
    c = SPRITE / 2
    pts = np.stack([c + radii * np.cos(angles), c + radii * np.sin(angles)], 1)
    mask = np.zeros((SPRITE, SPRITE), np.uint8)
    cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    # Stripes of two colours at a random angle, then a dot near one edge so rotation shows.
    a, b = _random_colour(rng), _random_colour(rng)
    yy, xx = np.mgrid[0:SPRITE, 0:SPRITE].astype(np.float32)
    phi = rng.uniform(0, math.pi)
    # Wide stripes: at the speeds below a point moves at most ~3 px per frame, well under half a
    # stripe period, so the texture never shows wagon-wheel (reversed) motion.
    period = rng.uniform(26, 40)
    stripes = (np.sin(((xx - c) * math.cos(phi) + (yy - c) * math.sin(phi)) * 2 * math.pi / period) > 0)
    image = np.where(stripes[..., None], np.array(a, np.uint8), np.array(b, np.uint8))
    k = int(rng.integers(0, n))
    dot = (int(c + 0.6 * radii[k] * math.cos(angles[k])), int(c + 0.6 * radii[k] * math.sin(angles[k])))
    cv2.circle(image, dot, int(SPRITE * 0.11), _random_colour(rng), -1, cv2.LINE_AA)
    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (3, 3), 0)
    return Sprite(np.ascontiguousarray(image, np.uint8), alpha)


def _composite(bg: np.ndarray, sprite: Sprite, centre: tuple[float, float], angle_deg: float,
               scale: float) -> np.ndarray:
    """``bg`` with ``sprite`` rotated by ``angle_deg`` (counter-clockwise on screen for positive
    values, as cv2 defines it), scaled by ``scale`` and centred at ``centre`` (x, y)."""
    h, w = bg.shape[:2]
    m = cv2.getRotationMatrix2D((SPRITE / 2, SPRITE / 2), angle_deg, scale)
    m[0, 2] += centre[0] - SPRITE / 2
    m[1, 2] += centre[1] - SPRITE / 2
    img = cv2.warpAffine(sprite.image, m, (w, h), flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(sprite.alpha, m, (w, h), flags=cv2.INTER_LINEAR)[..., None]
    out = bg.astype(np.float32) * (1 - alpha) + img.astype(np.float32) * alpha
    return out


def render_clip(motion: str, rng: np.random.Generator, seconds: float = 2.0, fps: float = FPS,
                size: tuple[int, int] = SIZE, speed: tuple[float, float] = (0.25, 0.4)) -> list[np.ndarray]:
    """The BGR frames of one clip of ``motion`` (one of :data:`MOTIONS`).

    ``speed``: range of translation speeds, in frame widths (heights) per second.
    """
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}; expected one of {MOTIONS}")
    w, h = size
    n = max(1, int(round(seconds * fps)))
    bg = make_background(rng, size)
    sprite = make_sprite(rng)
    base_scale = rng.uniform(34, 50) / SPRITE        # sprite diameter 34-50 px
    angle0 = rng.uniform(0, 360)
    half = base_scale * SPRITE / 2
    drift = rng.uniform(-1, 1, 2) * 5.0             # px/s nuisance drift
    omega, growth = 0.0, (1.0, 1.0)
    if motion in _TRANSLATIONS:
        d = np.array(_TRANSLATIONS[motion])
        extent = np.array([w, h], np.float64)
        along = int(np.argmax(np.abs(d)))
        speed = rng.uniform(*speed) * extent[along]
        travel = speed * seconds
        start = rng.uniform(half, extent - half)
        # Start far enough from the edge the sprite moves towards that it stays mostly in view.
        lo, hi = half * 0.6, extent[along] - half * 0.6
        if d[along] > 0:
            start[along] = rng.uniform(lo, max(lo, hi - travel))
        else:
            start[along] = rng.uniform(min(hi, lo + travel), hi)
        velocity = d * speed
        velocity[1 - along] = drift[1 - along]
    else:
        start = rng.uniform([w * 0.3, h * 0.3], [w * 0.7, h * 0.7])
        velocity = drift
        if motion.startswith("rotating"):
            # cv2 angles are counter-clockwise on screen: clockwise motion = decreasing angle.
            omega = rng.uniform(90, 180) * (-1.0 if motion == "rotating_clockwise" else 1.0)
        else:
            low, high = rng.uniform(0.55, 0.7), rng.uniform(1.3, 1.5)
            growth = (low, high) if motion == "growing" else (high, low)
    frames = []
    for i in range(n):
        t = i / fps
        frac = i / max(1, n - 1)
        scale = base_scale * (growth[0] + (growth[1] - growth[0]) * frac)
        centre = (float(start[0] + velocity[0] * t), float(start[1] + velocity[1] * t))
        img = _composite(bg, sprite, centre, angle0 + omega * t, scale)
        img += rng.normal(0, 3.0, img.shape).astype(np.float32)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames


def write_clip(path: Path, frames: Sequence[np.ndarray], fps: float = FPS) -> Path:
    """Write BGR ``frames`` as an mp4v video."""
    h, w = frames[0].shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write mp4v video {path}")
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()
    return path


def make_dataset(root: Path, motions: Iterable[str] = SIX_CLASSES, clips_per_class: int = 12,
                 seed: int = 0, seconds: float = 2.0, fps: float = FPS,
                 size: tuple[int, int] = SIZE) -> Path:
    """``root/<motion>/<motion>_<i>.mp4`` for each motion: the layout ``realtime finetune`` reads."""
    root = Path(root)
    for k, motion in enumerate(motions):
        rng = np.random.default_rng([seed, k])
        for i in range(clips_per_class):
            write_clip(root / motion / f"{motion}_{i:02d}.mp4",
                       render_clip(motion, rng, seconds, fps, size), fps)
    return root


def make_stream(path: Path, motions: Sequence[str], seed: int = 1000, seconds: float = 4.0,
                fps: float = FPS, size: tuple[int, int] = SIZE,
                speed: tuple[float, float] = (0.18, 0.25)) -> list[tuple[str, float, float]]:
    """A "live" stream: one scene (a fresh background and shape) in which the shape performs
    ``motions`` in turn, ``seconds`` each, without cuts, like one person doing one activity
    after another in front of a camera.

    Translations run at ``speed`` frame widths (heights) per second, scaled down where needed
    so the whole path stays inside the centred square a model sees; rotations turn at 90-180 deg/s in place; growing and
    shrinking go between 0.7x and 1.3x. Returns the segments as (motion, start, end) seconds.
    """
    for motion in motions:
        if motion not in MOTIONS:
            raise ValueError(f"unknown motion {motion!r}; expected one of {MOTIONS}")
    rng = np.random.default_rng(seed)
    w, h = size
    n = max(1, int(round(seconds * fps)))
    bg = make_background(rng, size)
    sprite = make_sprite(rng)
    base_scale = rng.uniform(40, 50) / SPRITE
    half = base_scale * SPRITE / 2
    # Plan the translations, then place the start so that the whole path stays in view.
    steps = [np.array(_TRANSLATIONS[m]) * rng.uniform(*speed) * np.array([w, h]) * seconds
             if m in _TRANSLATIONS else np.zeros(2) for m in motions]
    path_points = np.cumsum([np.zeros(2)] + steps, axis=0)
    low, high = path_points.min(0), path_points.max(0)
    # Stay inside the centred square a model crops (the middle 120 x 120 of 160 x 120).
    side = float(min(w, h))
    origin = np.array([(w - side) / 2, (h - side) / 2])
    room = np.array([side, side]) - 2 * half
    shrink = float(min(1.0, *(room / np.maximum(high - low, 1e-6))))
    steps = [step * shrink for step in steps]
    start = origin + half + (room - (high - low) * shrink) / 2 - low * shrink
    position, angle, scale = start.astype(np.float64), float(rng.uniform(0, 360)), 1.0
    frames: list[np.ndarray] = []
    segments: list[tuple[str, float, float]] = []
    for motion, step in zip(motions, steps):
        begin = len(frames) / fps
        omega = 0.0
        if motion.startswith("rotating"):
            omega = rng.uniform(90, 180) * (-1.0 if motion == "rotating_clockwise" else 1.0)
        target = {"growing": 1.3, "shrinking": 0.7}.get(motion, scale)
        p0, s0, a0 = position.copy(), scale, angle
        for i in range(n):
            frac = (i + 1) / n
            position = p0 + step * frac
            scale = s0 + (target - s0) * frac
            angle = a0 + omega * (i + 1) / fps
            img = _composite(bg, sprite, (float(position[0]), float(position[1])), angle, base_scale * scale)
            img += rng.normal(0, 3.0, img.shape).astype(np.float32)
            frames.append(np.clip(img, 0, 255).astype(np.uint8))
        segments.append((motion, begin, len(frames) / fps))
    write_clip(Path(path), frames, fps)
    return segments
