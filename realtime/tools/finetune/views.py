"""Views for fine-tuning: a clip decoded, one model window sampled from it by time, augmented.

A view is ``num_frames`` frames at the model's frame rate, resized and cropped with the
model's :class:`~realtime.core.types.InputSpec` as the live pipeline does;
:class:`Augmentation` says how training views are jittered. The end of the module turns
views into normalised tensors and a torch ``Dataset`` that decodes them on the fly.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np
import torch

from realtime.core.errors import SourceError
from realtime.core.preprocess import normalize, output_size, prepare_frame
from realtime.core.types import DEFAULT_FPS, InputSpec
from realtime.tools.finetune.dataset import ClipFile

logger = logging.getLogger(__name__)

MAX_CLIP_SECONDS = 30.0
"""Only the first this many seconds of a clip are decoded (a clip should show one activity)."""
"""Assumed when a clip does not declare its frame rate."""


# --------------------------------------------------------------------------- views


@dataclass(frozen=True)
class Augmentation:
    """Random changes to a training view; all draws come from the caller's generator.

    ``temporal_jitter``: random window start within the clip. ``rate_jitter``: the window
    is sampled at the model's frame rate times a factor in [1 - j, 1 + j]. ``scale``: the
    crop's area relative to the model's centre crop (below 1 zooms in, above zooms out,
    limited by the frame), ``aspect``: its width / height range, at a random position.
    ``brightness``/``contrast``: factors in [1 - b, 1 + b] / [1 - c, 1 + c]. ``flip``
    (horizontal) and ``reverse`` (time) are each applied to half the views when enabled.
    """

    temporal_jitter: bool = True
    rate_jitter: float = 0.15
    scale: tuple[float, float] = (0.6, 1.25)
    aspect: tuple[float, float] = (0.8, 1.25)
    brightness: float = 0.25
    contrast: float = 0.25
    flip: bool = False
    reverse: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.rate_jitter < 1:
            raise ValueError(f"rate_jitter must be in [0, 1), got {self.rate_jitter}")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale must be 0 < low <= high, got {self.scale}")
        if not 0 < self.aspect[0] <= self.aspect[1]:
            raise ValueError(f"aspect must be 0 < low <= high, got {self.aspect}")
        if not (0 <= self.brightness < 1 and 0 <= self.contrast < 1):
            raise ValueError("brightness and contrast jitter must be in [0, 1)")

    @classmethod
    def off(cls) -> "Augmentation":
        """No augmentation at all (what validation views get)."""
        return cls(temporal_jitter=False, rate_jitter=0.0, scale=(1.0, 1.0), aspect=(1.0, 1.0),
                   brightness=0.0, contrast=0.0)


@dataclass
class DecodedClip:
    """A clip's frames, resized (short side) but not cropped, RGB uint8 (N, h, w, 3)."""

    path: Path
    frames: np.ndarray
    fps: float


def read_clip(path: Path, spec: InputSpec, max_seconds: float = MAX_CLIP_SECONDS) -> DecodedClip:
    """Decode ``path`` and resize every frame so its short side is ``spec.resize_short``
    (the same resize, interpolation and rounding as the live pipeline's). SourceError if
    nothing can be decoded."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SourceError(f"cannot open clip {path}")
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not math.isfinite(fps) or fps <= 1.0 or fps > 1000.0:
            logger.warning("%s does not declare a usable frame rate (%s); assuming %g fps", path, fps, DEFAULT_FPS)
            fps = DEFAULT_FPS
        limit = max(1, int(max_seconds * fps))
        frames: list[np.ndarray] = []
        full: Optional[InputSpec] = None
        while len(frames) < limit:
            ok, bgr = cap.read()
            if not ok or bgr is None:
                break
            if full is None:
                h, w = bgr.shape[:2]
                full = dataclasses.replace(spec, crop=output_size(h, w, spec))
            frames.append(prepare_frame(bgr, full))
        else:
            if cap.grab():
                logger.warning("%s is longer than %g s: only the start is used (cut long recordings into one "
                               "clip per activity)", path, max_seconds)
    finally:
        cap.release()
    if not frames:
        raise SourceError(f"no frame could be decoded from clip {path}")
    return DecodedClip(path, np.stack(frames), fps)


def window_indices(num_available: int, clip_fps: float, num_frames: int, fps: float,
                   rng: Optional[np.random.Generator] = None, aug: Optional[Augmentation] = None,
                   position: float = 0.5) -> np.ndarray:
    """Frame indices (non-decreasing: frame order is always kept) of one window.

    The window samples ``num_frames`` instants ``1 / fps`` apart (times a random rate factor
    with ``rng`` and ``aug.rate_jitter``), each taking the nearest source frame, as the live
    sampler does. Its start is random with ``rng`` and ``aug.temporal_jitter``, else at
    ``position`` (0 = clip start, 1 = end) of the free room. A clip shorter than the window
    is centred and its first/last frames repeated.
    """
    if num_available < 1 or num_frames < 1:
        raise ValueError(f"cannot sample {num_frames} frames from {num_available}")
    aug = aug or Augmentation.off()
    rate = 1.0
    if rng is not None and aug.rate_jitter > 0:
        rate = float(rng.uniform(1.0 - aug.rate_jitter, 1.0 + aug.rate_jitter))
    step = clip_fps / fps * rate
    span = step * (num_frames - 1)
    free = (num_available - 1) - span
    if free <= 0:
        start = free / 2.0
    elif rng is not None and aug.temporal_jitter:
        start = float(rng.uniform(0.0, free))
    else:
        start = free * float(np.clip(position, 0.0, 1.0))
    idx = np.floor(start + step * np.arange(num_frames) + 0.5).astype(np.int64)
    return np.clip(idx, 0, num_available - 1)


def crop_box(height: int, width: int, crop: tuple[int, int], rng: Optional[np.random.Generator] = None,
             aug: Optional[Augmentation] = None) -> tuple[int, int, int, int]:
    """(top, left, box_height, box_width) of the region resized to ``crop``.

    Without ``rng`` (or with no scale/aspect jitter) it is the centred ``crop``, exactly what
    :func:`realtime.core.preprocess.prepare_frame` takes; otherwise a box of area
    ``crop_h * crop_w * U(scale)`` and aspect ``U(aspect)`` (log-uniform), at a random position.
    """
    ch, cw = crop
    aug = aug or Augmentation.off()
    if rng is None or (aug.scale == (1.0, 1.0) and aug.aspect == (1.0, 1.0)):
        return (height - ch) // 2, (width - cw) // 2, ch, cw
    area = ch * cw * float(rng.uniform(*aug.scale))
    ratio = float(np.exp(rng.uniform(np.log(aug.aspect[0]), np.log(aug.aspect[1])))) * cw / ch
    bw = int(round(min(width, max(8.0, math.sqrt(area * ratio)))))
    bh = int(round(min(height, max(8.0, math.sqrt(area / ratio)))))
    top = int(rng.integers(0, height - bh + 1))
    left = int(rng.integers(0, width - bw + 1))
    return top, left, bh, bw


def make_view(clip: DecodedClip, num_frames: int, fps: float, crop: tuple[int, int],
              rng: Optional[np.random.Generator] = None, aug: Optional[Augmentation] = None,
              position: float = 0.5) -> np.ndarray:
    """One window of ``clip`` as the model sees it: uint8 (num_frames, crop_h, crop_w, 3) RGB.

    Without ``rng`` the view is unaugmented: the window at ``position`` of the clip with the
    model's centre crop (the frames the live pipeline would feed it).
    """
    aug = aug or Augmentation.off()
    idx = window_indices(len(clip.frames), clip.fps, num_frames, fps, rng, aug, position)
    if rng is not None and aug.reverse and rng.random() < 0.5:
        idx = idx[::-1]
    h, w = clip.frames.shape[1:3]
    if h < crop[0] or w < crop[1]:
        raise ValueError(f"frames of {clip.path} are {h}x{w}, smaller than the crop {crop}")
    top, left, bh, bw = crop_box(h, w, crop, rng, aug)
    region = clip.frames[idx, top:top + bh, left:left + bw]
    if (bh, bw) != tuple(crop):
        region = np.stack([cv2.resize(f, (crop[1], crop[0]), interpolation=cv2.INTER_LINEAR) for f in region])
    else:
        region = np.ascontiguousarray(region)
    if rng is not None:
        if aug.flip and rng.random() < 0.5:
            region = np.ascontiguousarray(region[:, :, ::-1])
        if aug.brightness > 0 or aug.contrast > 0:
            bright = float(rng.uniform(1 - aug.brightness, 1 + aug.brightness))
            contrast = float(rng.uniform(1 - aug.contrast, 1 + aug.contrast))
            x = region.astype(np.float32) * bright
            mean = float(x.mean())
            region = np.clip((x - mean) * contrast + mean, 0, 255).astype(np.uint8)
    return region


def eval_positions(count: int) -> list[float]:
    """Window positions of the validation views: 0.5 for one, else evenly from start to end."""
    return [0.5] if count <= 1 else [i / (count - 1) for i in range(count)]


# --------------------------------------------------------------------------- views as tensors


def _to_input(clips: np.ndarray, spec: InputSpec, device: torch.device, layout: str) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> normalised float tensor: ``i3d`` (B, 3, T, H, W) channels-last
    or ``hf`` (B, T, 3, H, W)."""
    x = torch.from_numpy(normalize(clips, spec))
    if layout == "i3d":
        return x.permute(0, 4, 1, 2, 3).to(device).contiguous(memory_format=torch.channels_last_3d)
    return x.permute(0, 1, 4, 2, 3).to(device).contiguous()


class _ViewDataset(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Views decoded on the fly: training (augmented, fresh each epoch) or validation windows."""

    def __init__(self, clips: Sequence[ClipFile], spec: InputSpec, num_frames: int, fps: float,
                 aug: Optional[Augmentation], seed: int, val_views: int = 1) -> None:
        self.clips = list(clips)
        self.spec = spec
        self.num_frames = num_frames
        self.fps = fps
        self.aug = aug
        self.seed = seed
        self.epoch = 0
        self.positions = eval_positions(val_views) if aug is None else [0.5]

    def __len__(self) -> int:
        return len(self.clips) * len(self.positions)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int, int]:
        c, v = divmod(i, len(self.positions))
        clip = self.clips[c]
        try:
            decoded = read_clip(clip.path, self.spec)
        except SourceError as exc:   # it decoded when probed; a failure now is rare: use a blank view
            logger.warning("%s", exc)
            crop = self.spec.crop
            return np.zeros((self.num_frames, crop[0], crop[1], 3), np.uint8), clip.label, c
        if self.aug is None:
            view = make_view(decoded, self.num_frames, self.fps, self.spec.crop, position=self.positions[v])
        else:
            rng = np.random.default_rng([self.seed, c, self.epoch])
            view = make_view(decoded, self.num_frames, self.fps, self.spec.crop, rng, self.aug)
        return view, clip.label, c


def _collate(items: list[tuple[np.ndarray, int, int]]) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    views, labels, clips = zip(*items)
    return np.stack(views), torch.tensor(labels), torch.tensor(clips)


def _loader(ds: _ViewDataset, batch_size: int, shuffle: bool, workers: int, seed: int) -> torch.utils.data.DataLoader:  # type: ignore[type-arg]
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                                       collate_fn=_collate, generator=g, persistent_workers=False)
