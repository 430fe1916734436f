"""Per-frame spatial preprocessing (once per frame) and per-window normalisation.

Frames enter the ring already resized and cropped, as uint8 RGB, so overlapping
windows never redo the expensive part. Normalisation to float happens per window
(cheap, vectorised) in the classifier.

Interpolation modes (``InputSpec.interpolation``):

``"linear"``, ``"area"``, ``"cubic"``
    OpenCV's ``INTER_LINEAR`` / ``INTER_AREA`` / ``INTER_CUBIC``; the long side is
    *rounded* (:func:`resized_size`). ``"linear"`` is what the I3D backend was
    validated with; it does not antialias, so it aliases when downscaling.

``"pil_bilinear"``, ``"pil_bicubic"``
    What Hugging Face image processors do (``resample=BILINEAR`` / ``BICUBIC``):
    an *antialiased* filter whose support widens with the downscale factor (PIL's
    ``Image.resize``, and ``torchvision``'s ``resize(antialias=True)``), and the
    long side *truncated* as ``int(short_side * long / short)``
    (:func:`hf_resized_size`, ``transformers.image_transforms.get_resize_output_image_size``).
    It is computed with torch's antialiased ``interpolate`` on the uint8 frame,
    which is the kernel torchvision's resize uses on uint8 tensors and a port of
    PIL's: it agrees with PIL to within 1 uint8 level for bilinear (2 for
    bicubic), and is several times faster than PIL (docs/performance.md). OpenCV
    has no antialiased bilinear, and its ``INTER_AREA`` box filter is slower and
    visibly off on detailed frames.

The centre crop follows HF too: top-left ``((h - ch) // 2, (w - cw) // 2)``.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from realtime.core.types import InputSpec

_CV2_INTERPOLATION = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "cubic": cv2.INTER_CUBIC}
_ANTIALIASED = {"pil_bilinear": "bilinear", "pil_bicubic": "bicubic"}

INTERPOLATIONS: tuple[str, ...] = (*_CV2_INTERPOLATION, *_ANTIALIASED)
"""Every accepted value of ``InputSpec.interpolation``."""

_torch: Any = None  # imported on first use of an antialiased mode


def resized_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(new_height, new_width) so the short side becomes ``short_side``, aspect kept, rounded."""
    if height <= width:
        return short_side, max(short_side, int(round(width * short_side / height)))
    return max(short_side, int(round(height * short_side / width))), short_side


def hf_resized_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(new_height, new_width) as Hugging Face computes it for ``size={"shortest_edge": N}``.

    The long side is truncated, not rounded: ``int(short_side * long / short)``
    (e.g. 340x256 -> 297x224 where :func:`resized_size` gives 298x224).
    """
    if height <= width:
        return short_side, (short_side * width) // height
    return (short_side * height) // width, short_side


def output_size(height: int, width: int, spec: InputSpec) -> tuple[int, int]:
    """The (height, width) a frame is resized to before the crop, with ``spec``'s rounding rule."""
    if spec.interpolation in _ANTIALIASED:
        return hf_resized_size(height, width, spec.resize_short)
    return resized_size(height, width, spec.resize_short)


def center_crop_box(height: int, width: int, crop: tuple[int, int]) -> tuple[int, int]:
    """Top-left corner of a centred ``crop`` inside a (height, width) image."""
    ch, cw = crop
    return (height - ch) // 2, (width - cw) // 2


def _check_spec(spec: InputSpec) -> None:
    if spec.interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"unknown interpolation {spec.interpolation!r} in InputSpec; expected one of {', '.join(INTERPOLATIONS)}"
        )


def _antialiased_resize_crop(
    bgr: np.ndarray, size: tuple[int, int], spec: InputSpec, out: np.ndarray | None
) -> np.ndarray:
    """Antialiased resize to ``size``, centre crop and BGR->RGB in one go. Returns (H, W, 3) uint8."""
    global _torch
    if _torch is None:
        import torch

        _torch = torch
    torch = _torch
    if not (bgr.flags.writeable and all(s > 0 for s in bgr.strides)):
        bgr = np.array(bgr, copy=True, order="C")  # torch.from_numpy needs writeable, positive strides
    nh, nw = size
    top, left = center_crop_box(nh, nw, spec.crop)
    ch, cw = spec.crop
    with torch.inference_mode():
        image = torch.from_numpy(bgr).permute(2, 0, 1).unsqueeze(0)  # (1, 3, H, W) view, no copy
        resized = torch.nn.functional.interpolate(
            image, size=(nh, nw), mode=_ANTIALIASED[spec.interpolation], antialias=True, align_corners=False
        )
    planes = resized[0].numpy()[:, top:top + ch, left:left + cw]  # planar (3, ch, cw) B, G, R views
    # Interleave the planes in reverse order: crop + BGR->RGB + CHW->HWC in one pass (cheaper
    # than torch's own uint8 permute-copy).
    if out is None:
        return cv2.merge([planes[2], planes[1], planes[0]])
    return cv2.merge([planes[2], planes[1], planes[0]], dst=out)


def prepare_frame(bgr: np.ndarray, spec: InputSpec, out: np.ndarray | None = None) -> np.ndarray:
    """Resize (short side), centre crop and convert BGR->RGB. Returns (H, W, 3) uint8.

    ``out``, when given, is a (crop_h, crop_w, 3) uint8 array the result is written into.
    """
    if bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 BGR frame, got shape {bgr.shape}")
    _check_spec(spec)
    h, w = bgr.shape[:2]
    nh, nw = output_size(h, w, spec)
    ch, cw = spec.crop
    if ch > nh or cw > nw:
        raise ValueError(f"crop {spec.crop} is larger than the resized frame ({nh}, {nw}); check the InputSpec")
    if spec.interpolation in _ANTIALIASED:
        if (nh, nw) != (h, w):
            return _antialiased_resize_crop(bgr, (nh, nw), spec, out)
        resized = bgr
    else:
        interp = _CV2_INTERPOLATION[spec.interpolation]
        resized = bgr if (nh, nw) == (h, w) else cv2.resize(bgr, (nw, nh), interpolation=interp)
    top, left = center_crop_box(nh, nw, spec.crop)
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
