"""What a ``transformers`` video checkpoint expects as input, read from the checkpoint itself.

The frames per window and the time they span at the training frame rate
(:func:`window_seconds_for`), and the image processor's resize, crop and normalisation as an
:class:`~realtime.core.types.InputSpec` (:func:`input_spec_from_processor`), so that frames are
prepared once by :mod:`realtime.core.preprocess` exactly as the processor would.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

import numpy as np

from realtime.core.errors import ModelError
from realtime.core.types import InputSpec

logger = logging.getLogger(__name__)

TRAINING_FPS = 30.0
"""Frame rate the strides below refer to: Kinetics videos are (mostly) 30 fps."""

FRAME_STRIDE: Mapping[str, int] = {
    # VideoMAE Kinetics fine-tuning/testing: 16 frames, every 4th frame ("16x4").
    "videomae": 4,
    # ViViT-B/16x2 Kinetics (scenic config): 32 frames, every 2nd frame.
    "vivit": 2,
    # TimeSformer base (TimeSformer_divST_8x32_224): 8 frames, every 32nd frame.
    "timesformer": 32,
}
"""Training frame stride per ``config.model_type`` (frames skipped between sampled frames)."""

FRAME_STRIDE_BY_NUM_FRAMES: Mapping[tuple[str, int], int] = {
    ("timesformer", 8): 32,  # facebook/timesformer-base-finetuned-k400 (8x32, 8.5 s)
    ("timesformer", 16): 16,  # facebook/timesformer-hr-finetuned-k400 (TimeSformer_divST_16x16_448, 8.5 s)
    ("timesformer", 96): 4,  # facebook/timesformer-large-finetuned-k400 (TimeSformer_divST_96x4_224, 12.8 s)
}
"""Overrides of :data:`FRAME_STRIDE` for model families whose variants differ by frame count."""

DEFAULT_FRAME_STRIDE = 4
"""Stride assumed for model types in neither table (the common "Nx4" Kinetics recipe)."""

_CONFIG_STRIDE_KEYS = ("frame_stride", "frame_sample_rate")
_CONFIG_WINDOW_KEY = "window_seconds"
_CONFIG_FPS_KEY = "training_fps"

_IMAGENET_STANDARD = (0.5, 0.5, 0.5)
_VIDEOMAE_PROCESSOR_DEFAULTS: Mapping[str, Any] = {
    # VideoMAEImageProcessor class defaults (also TimeSformer's image processor).
    "do_resize": True,
    "size": {"shortest_edge": 224},
    "resample": 2,  # PILImageResampling.BILINEAR
    "do_center_crop": True,
    "crop_size": {"height": 224, "width": 224},
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": _IMAGENET_STANDARD,
    "image_std": _IMAGENET_STANDARD,
}
PROCESSOR_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "videomae": _VIDEOMAE_PROCESSOR_DEFAULTS,
    "timesformer": _VIDEOMAE_PROCESSOR_DEFAULTS,
    # VivitImageProcessor defaults: short side 256, crop 224, x / 127.5 - 1.
    "vivit": {**_VIDEOMAE_PROCESSOR_DEFAULTS, "size": {"shortest_edge": 256}, "rescale_factor": 1 / 127.5,
              "offset": True},
}
"""Image processor settings a checkpoint's ``preprocessor_config.json`` may leave out, per model type."""

_RESAMPLE_TO_INTERPOLATION = {2: "pil_bilinear", 3: "pil_bicubic"}  # PILImageResampling BILINEAR, BICUBIC


def frame_stride_for(model_type: str, num_frames: int) -> int:
    """Training frame stride for a model family: the per-(type, frames) table, the per-type table, else 4."""
    stride = FRAME_STRIDE_BY_NUM_FRAMES.get((model_type, num_frames), FRAME_STRIDE.get(model_type))
    if stride is None:
        logger.warning(
            "unknown video model type %r: assuming it was trained on every %dth frame at %g fps",
            model_type, DEFAULT_FRAME_STRIDE, TRAINING_FPS,
        )
        return DEFAULT_FRAME_STRIDE
    return stride


def window_seconds_for(config: Any, num_frames: int, frame_stride: Optional[int] = None) -> float:
    """Seconds a window of ``num_frames`` spans as the model saw it in training.

    One rule: ``num_frames * stride / fps``, with

    * ``config.window_seconds``, when present, taken as is;
    * stride: the ``frame_stride`` argument, else ``config.frame_stride`` /
      ``config.frame_sample_rate``, else :func:`frame_stride_for` (per-model-type table:
      VideoMAE 4, ViViT 2, TimeSformer 32 / 16 / 4 for its 8 / 16 / 96-frame variants,
      others 4);
    * fps: ``config.training_fps``, else 30 (Kinetics).

    So VideoMAE-Kinetics (16 frames) spans 16 * 4 / 30 = 2.13 s, ViViT-B (32 frames)
    2.13 s, TimeSformer-base (8 frames) and -HR (16) 8.53 s, TimeSformer-L (96) 12.8 s.
    Checkpoints trained with segment sampling over whole clips (e.g. Something-Something
    v2) have no fixed stride; pass ``frame_stride`` to choose one.
    """
    explicit = getattr(config, _CONFIG_WINDOW_KEY, None)
    if explicit:
        return float(explicit)
    stride = frame_stride
    if stride is None:
        stride = next((getattr(config, k) for k in _CONFIG_STRIDE_KEYS if getattr(config, k, None)), None)
    if stride is None:
        stride = frame_stride_for(str(getattr(config, "model_type", "")), num_frames)
    fps = float(getattr(config, _CONFIG_FPS_KEY, None) or TRAINING_FPS)
    return num_frames * int(stride) / fps


def default_processor_settings(model_type: str, image_size: Optional[int] = None) -> dict[str, Any]:
    """Processor settings for a checkpoint without ``preprocessor_config.json``: the model type's
    defaults (:data:`PROCESSOR_DEFAULTS`), resize and crop scaled to the model's ``image_size``."""
    settings = dict(PROCESSOR_DEFAULTS.get(model_type, _VIDEOMAE_PROCESSOR_DEFAULTS))
    if image_size:
        crop = _size_pair(settings["crop_size"], "crop_size")[0]
        short = int(settings["size"]["shortest_edge"])
        settings["size"] = {"shortest_edge": round(short * image_size / crop)}
        settings["crop_size"] = {"height": image_size, "width": image_size}
    return settings


def square_image_size(config: Any) -> Optional[int]:
    """``config.image_size`` as one int (None if absent or not square)."""
    size = getattr(config, "image_size", None)
    if isinstance(size, (list, tuple)):
        size = size[0] if len(size) == 2 and size[0] == size[1] else None
    return int(size) if size else None


def _size_pair(value: Any, what: str) -> tuple[int, int]:
    """(height, width) from an int or a {"height", "width"} dict."""
    if isinstance(value, (int, float)):
        return int(value), int(value)
    if isinstance(value, Mapping) and "height" in value and "width" in value:
        return int(value["height"]), int(value["width"])
    raise ModelError(f"image processor {what} {value!r} is not an int or a {{'height', 'width'}} dict")


def _triple(value: Any, what: str) -> tuple[float, float, float]:
    if isinstance(value, (int, float)):
        return (float(value),) * 3
    values = tuple(float(v) for v in value)
    if len(values) != 3:
        raise ModelError(f"image processor {what} {value!r} must have 3 values (RGB)")
    return values  # type: ignore[return-value]


def input_spec_from_processor(
    settings: Mapping[str, Any], model_type: str = "", image_size: Optional[int] = None
) -> InputSpec:
    """The :class:`InputSpec` equivalent to an HF image processor's settings.

    ``settings`` is the ``preprocessor_config.json`` dict; keys it lacks come from
    :data:`PROCESSOR_DEFAULTS` for ``model_type`` (VideoMAE's otherwise). Where the
    processor does something frame-by-frame preprocessing cannot express, the closest
    equivalent is used and a warning logged:

    * ``size={"height": H, "width": W}`` resizes without keeping the aspect ratio; here the
      short side goes to ``min(H, W)`` (aspect kept) before the centre crop.
    * ``size`` with ``longest_edge``: the cap is ignored (only matters for extreme aspects).
    * ``do_resize=False`` / ``do_center_crop=False``: frames of any size must still come out
      at one size, so the short side is resized to the crop / the model's ``image_size``.
    """
    merged: dict[str, Any] = {**PROCESSOR_DEFAULTS.get(model_type, _VIDEOMAE_PROCESSOR_DEFAULTS)}
    merged.update({k: v for k, v in settings.items() if v is not None})

    # crop
    if merged.get("do_center_crop", True):
        crop = _size_pair(merged["crop_size"], "crop_size")
    else:
        side = image_size or _short_side(merged.get("size"), None)
        if side is None:
            raise ModelError("image processor has do_center_crop=false and no usable size; cannot pick a crop")
        crop = (int(side), int(side))
        logger.warning("image processor has do_center_crop=false; frames are centre cropped to %s anyway", crop)

    # resize
    if merged.get("do_resize", True):
        resize_short = _short_side(merged.get("size"), crop)
    else:
        resize_short = min(crop)
        logger.warning("image processor has do_resize=false; frames are resized to short side %d anyway",
                       resize_short)
    if resize_short < max(crop):
        raise ModelError(f"image processor resizes to short side {resize_short}, smaller than crop {crop}")

    # interpolation
    resample = merged.get("resample", 2)
    try:
        interpolation = _RESAMPLE_TO_INTERPOLATION[int(resample)]
    except (KeyError, TypeError, ValueError):
        interpolation = "pil_bilinear"
        logger.warning("image processor resample=%r is not supported; using antialiased bilinear", resample)

    # value transform: x * scale + offset, then (x - mean) / std
    if merged.get("do_rescale", True):
        scale = float(merged["rescale_factor"])
        offset = -1.0 if merged.get("offset") else 0.0
    else:
        scale, offset = 1.0, 0.0
    if merged.get("do_normalize", True):
        mean = _triple(merged["image_mean"], "image_mean")
        std = _triple(merged["image_std"], "image_std")
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return InputSpec(resize_short=resize_short, crop=crop, scale=scale, offset=offset, mean=mean, std=std,
                     interpolation=interpolation)


def _short_side(size: Any, crop: Optional[tuple[int, int]]) -> int:
    if isinstance(size, (int, float)):
        return int(size)
    if isinstance(size, Mapping):
        if size.get("shortest_edge"):
            if size.get("longest_edge"):
                logger.warning("image processor size %r: longest_edge is ignored", dict(size))
            return int(size["shortest_edge"])
        if size.get("height") and size.get("width"):
            h, w = int(size["height"]), int(size["width"])
            logger.warning(
                "image processor size %r resizes to a fixed shape without keeping the aspect ratio; "
                "here the short side is resized to %d (aspect kept) and then centre cropped",
                dict(size), min(h, w),
            )
            return min(h, w)
    if crop is not None:
        logger.warning("image processor size %r is not understood; resizing the short side to the crop", size)
        return min(crop)
    raise ModelError(f"image processor size {size!r} is not understood")


def resample_indices(num_in: int, num_out: int) -> np.ndarray:
    """Indices of ``num_out`` frames spread uniformly over ``num_in``: the frame nearest each
    of ``num_out`` equal time slots' centres (``floor((i + 0.5) * num_in / num_out)``).

    Subsampling keeps evenly spaced frames (32 -> 16 takes every 2nd, starting with the
    2nd); upsampling repeats frames (8 -> 16 shows each frame twice).
    """
    if num_in <= 0 or num_out <= 0:
        raise ValueError(f"cannot resample {num_in} frames to {num_out}")
    return ((np.arange(num_out) + 0.5) * num_in / num_out).astype(np.int64)
