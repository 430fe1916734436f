"""Per-frame spatial preprocessing (once per frame) and per-window normalisation.

Frames enter the ring already resized and cropped, as uint8 RGB, so overlapping
windows never redo the expensive part. Normalisation to float happens per window
(cheap, vectorised) in the classifier.
"""

from __future__ import annotations

import cv2
import numpy as np

from .types import InputSpec

_INTERPOLATION = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "cubic": cv2.INTER_CUBIC}


def resized_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(new_height, new_width) so the short side becomes ``short_side``, aspect kept, rounded."""
    if height <= width:
        return short_side, max(short_side, int(round(width * short_side / height)))
    return max(short_side, int(round(height * short_side / width))), short_side


def center_crop_box(height: int, width: int, crop: tuple[int, int]) -> tuple[int, int]:
    """Top-left corner of a centred ``crop`` inside a (height, width) image."""
    ch, cw = crop
    return (height - ch) // 2, (width - cw) // 2


def prepare_frame(bgr: np.ndarray, spec: InputSpec, out: np.ndarray | None = None) -> np.ndarray:
    """Resize (short side), centre crop and convert BGR->RGB. Returns (H, W, 3) uint8."""
    if bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 BGR frame, got shape {bgr.shape}")
    h, w = bgr.shape[:2]
    nh, nw = resized_size(h, w, spec.resize_short)
    interp = _INTERPOLATION[spec.interpolation]
    resized = bgr if (nh, nw) == (h, w) else cv2.resize(bgr, (nw, nh), interpolation=interp)
    top, left = center_crop_box(nh, nw, spec.crop)
    ch, cw = spec.crop
    crop = resized[top:top + ch, left:left + cw]
    if out is None:
        return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
    cv2.cvtColor(crop, cv2.COLOR_BGR2RGB, dst=out)
    return out


def normalize(clips: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 (..., 3) RGB -> float32 ``((x * scale + offset) - mean) / std``."""
    x = clips.astype(np.float32)
    mean = np.asarray(spec.mean, np.float32)
    std = np.asarray(spec.std, np.float32)
    x *= np.float32(spec.scale)
    if spec.offset:
        x += np.float32(spec.offset)
    if np.any(mean != 0.0):
        x -= mean
    if np.any(std != 1.0):
        x /= std
    return x
