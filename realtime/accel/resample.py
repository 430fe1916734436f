"""Per-frame preprocessing on the model's device: resampling plans and :class:`FramePreprocessor`.

The CPU path (:func:`realtime.core.preprocess.prepare_frame` once per frame, then
:func:`realtime.core.preprocess.normalize` per window) costs CPU time per frame and a
float copy per window (docs/performance.md). On a GPU the same work is a handful
of small kernels: of each decoded uint8 frame only the rows and columns the resize
reads are copied into a pinned host buffer and uploaded once (``non_blocking``),
then resized, centre cropped, flipped BGR->RGB and normalised into a slot of a
preallocated ``(capacity, 3, H, W)`` tensor in the model's dtype
(:class:`realtime.accel.device_ring.DeviceFrameRing`, which also owns the upload, the
CUDA graph and the threading). This module is the maths: which source pixels each output
pixel reads, with which integer weights, and the kernels that apply them.

Numerics: the resampling is an integer re-implementation of the two CPU kernels,
so the uint8 RGB crop it produces is the one the CPU path produces:

``"pil_bilinear"`` / ``"pil_bicubic"``
    torch's antialiased uint8 ``interpolate`` (what :mod:`realtime.core.preprocess`
    runs on the CPU, a port of PIL's ``Image.resize``): separable, horizontal
    pass first, filter weights computed in float64 exactly as torch does and
    rounded to int16 with torch's per-axis precision, int32 accumulation with
    round-half-up, clamp to [0, 255] after each pass.
``"linear"``
    OpenCV's ``INTER_LINEAR`` for uint8: 11-bit fixed-point weights computed in
    float32 as OpenCV does, horizontal pass kept in int32, vertical pass with
    OpenCV's ``((b0 * (r0 >> 4)) >> 16) + ((b1 * (r1 >> 4)) >> 16) + 2) >> 2``;
    an exact 2x downscale uses OpenCV's fast area average, as OpenCV does.

Only the output pixels inside the centre crop are computed. Normalisation then
repeats :func:`~realtime.core.preprocess.normalize`'s float32 operations in the same
order (``x * scale``, ``+ offset``, ``- mean``, ``/ std``), and the cast to the
model dtype is the one the classifiers do. On CPU tensors the result is
bit-identical to ``normalize(prepare_frame(frame))`` (tested on real and synthetic
frames against the OpenCV and torch builds installed); the CUDA kernels are the
same integer and correctly rounded float32 operations. On a CPU this integer
version is much slower than :func:`~realtime.core.preprocess.prepare_frame`: there it
exists for testing only. ``"area"`` and
``"cubic"`` (OpenCV) are not implemented here: use the CPU path for them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Callable, Optional

import numpy as np
import torch

from realtime.accel.device import DeviceLike
from realtime.core.preprocess import center_crop_box, output_size
from realtime.core.types import InputSpec

logger = logging.getLogger(__name__)

SUPPORTED_INTERPOLATIONS: tuple[str, ...] = ("linear", "pil_bilinear", "pil_bicubic")
"""``InputSpec.interpolation`` values this module reproduces (the others need the CPU path)."""

_CV2_COEF_BITS = 11
_CV2_COEF_SCALE = 1 << _CV2_COEF_BITS   # OpenCV's INTER_RESIZE_COEF_SCALE
_BICUBIC_A = -0.5                       # torch's (and PIL's) antialiased bicubic coefficient


def supports(spec: InputSpec) -> bool:
    """Whether :class:`FramePreprocessor` reproduces ``spec``'s interpolation."""
    return spec.interpolation in SUPPORTED_INTERPOLATIONS


# --------------------------------------------------------------------------- resampling plans


def _bilinear_filter(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


def _bicubic_filter(x: np.ndarray) -> np.ndarray:
    a = _BICUBIC_A
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


_AA_FILTERS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], int]] = {
    "pil_bilinear": (_bilinear_filter, 2),
    "pil_bicubic": (_bicubic_filter, 4),
}


@dataclass(frozen=True)
class AxisPlan:
    """How one axis is resampled, for the output positions inside the crop only.

    ``index``/``weight``: (crop_len, K) source positions and integer weights (padding
    taps have weight 0). The output value is ``sum(weight * src[index])`` followed by
    the mode's integer rounding. ``identity``: the axis keeps its size (just crop).
    """

    index: np.ndarray          # int64 (n, K)
    weight: np.ndarray         # int32 (n, K)
    precision: int             # right shift of the antialiased modes
    start: int                 # crop start on this axis (in output coordinates)
    identity: bool = False

    @property
    def first(self) -> int:
        """Lowest source position any output reads."""
        return int(self.index.min())

    @property
    def last(self) -> int:
        """Highest source position any output reads."""
        return int(self.index.max())


def aa_axis_plan(in_size: int, out_size: int, start: int, length: int, interpolation: str) -> AxisPlan:
    """Antialiased resampling of one axis as torch computes it for uint8 input.

    Mirrors ``_compute_indices_min_size_weights_aa`` and
    ``_compute_index_ranges_int16_weights`` (ATen ``UpSampleKernel.cpp``): float64
    weights centred at ``scale * (i + 0.5)``, support ``interp_size / 2 * scale``
    when downscaling, normalised per output; one int16 precision for the whole axis
    (from the largest weight of *all* outputs, not only the cropped ones); weights
    rounded half away from zero.
    """
    if in_size == out_size:
        idx = np.arange(start, start + length, dtype=np.int64)[:, None]
        return AxisPlan(idx, np.ones_like(idx, dtype=np.int32), 0, start, identity=True)
    filt, interp_size = _AA_FILTERS[interpolation]
    scale = in_size / out_size
    support = (interp_size * 0.5) * scale if scale >= 1.0 else interp_size * 0.5
    max_taps = int(math.ceil(support)) * 2 + 1
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    i = np.arange(out_size, dtype=np.float64)
    center = scale * (i + 0.5)
    xmin = np.maximum((center - support + 0.5).astype(np.int64), 0)        # C truncation, values >= -0.5
    xsize = np.minimum((center + support + 0.5).astype(np.int64), in_size) - xmin
    xsize = np.clip(xsize, 0, max_taps)
    j = np.arange(max_taps, dtype=np.int64)
    valid = j[None, :] < xsize[:, None]
    w = np.where(valid, filt((j[None, :] + xmin[:, None] - center[:, None] + 0.5) * invscale), 0.0)
    total = w.sum(axis=1, keepdims=True)
    w = np.divide(w, total, out=np.zeros_like(w), where=total != 0.0)
    w_max = float(w.max())
    precision = 0
    while precision < 22:
        if int(0.5 + w_max * (1 << (precision + 1))) >= (1 << 15):
            break
        precision += 1
    scaled = w * (1 << precision)
    wi = np.trunc(np.where(scaled < 0, scaled - 0.5, scaled + 0.5)).astype(np.int32)
    index = np.minimum(xmin[:, None] + j[None, :], in_size - 1)
    index = np.where(valid, index, xmin[:, None])                          # padding taps: weight 0
    sl = slice(start, start + length)
    return AxisPlan(index[sl].astype(np.int64), wi[sl], precision, start)


def cv2_linear_axis_plan(in_size: int, out_size: int, start: int, length: int, *,
                         clamp: bool) -> AxisPlan:
    """OpenCV ``INTER_LINEAR`` (uint8, fixed point) weights of one axis.

    ``fx = float32((dx + 0.5) * scale - 0.5)`` with ``scale = 1 / (out / in)`` in
    double, ``sx = floor(fx)``, weights ``round(float32(1 - fx) * 2048)`` and
    ``round(fx * 2048)`` (round half to even, like ``cvRound``). Horizontally
    (``clamp``) OpenCV moves positions outside the image to the border pixel with
    weight (2048, 0); vertically it keeps the weights and reads the border row twice.
    """
    if in_size == out_size:
        idx = np.arange(start, start + length, dtype=np.int64)[:, None]
        return AxisPlan(idx, np.ones_like(idx, dtype=np.int32), 0, start, identity=True)
    scale = 1.0 / (out_size / in_size)
    d = np.arange(out_size, dtype=np.float64)
    f = ((d + 0.5) * scale - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    f = (f - s.astype(np.float32)).astype(np.float32)
    if clamp:
        low = s < 0
        f[low] = 0.0
        s[low] = 0
        high = s >= in_size - 1
        f[high] = 0.0
        s[high] = in_size - 1
    w0 = np.rint((np.float32(1.0) - f) * np.float32(_CV2_COEF_SCALE)).astype(np.int32)
    w1 = np.rint(f * np.float32(_CV2_COEF_SCALE)).astype(np.int32)
    index = np.clip(np.stack([s, s + 1], axis=1), 0, in_size - 1)
    sl = slice(start, start + length)
    return AxisPlan(index[sl], np.stack([w0, w1], axis=1)[sl], 0, start)


@dataclass(frozen=True)
class ResizePlan:
    """Everything needed to turn one source frame size into the model's crop, on a device."""

    mode: str                          # "aa", "cv2_linear", "cv2_area2x", "crop"
    src_size: tuple[int, int]          # (height, width) of the source frame
    rows: tuple[int, int]              # source rows read: [first, last]
    cols: tuple[int, int]              # source columns read: [first, last]
    h_index: Optional[torch.Tensor]    # (cw * K,) columns relative to cols[0], flattened
    h_weight: Optional[torch.Tensor]   # (cw, K) int32
    h_precision: int
    v_index: Optional[torch.Tensor]    # (ch * K,) rows relative to rows[0], flattened
    v_weight: Optional[torch.Tensor]   # (ch, K, 1) int32
    v_precision: int
    col_slice: tuple[int, int]         # for identity columns / area2x: [start, stop) in source columns
    row_slice: tuple[int, int]

    def cropped_to_reads(self) -> "ResizePlan":
        """The same plan for a frame already cut to ``rows`` x ``cols`` (the only pixels it reads):
        what is uploaded to the GPU is that part of the frame, not all of it."""
        r0, q0 = self.rows[0], self.cols[0]
        return replace(self, src_size=(self.rows[1] - r0 + 1, self.cols[1] - q0 + 1),
                       rows=(0, self.rows[1] - r0), cols=(0, self.cols[1] - q0),
                       col_slice=(self.col_slice[0] - q0, self.col_slice[1] - q0),
                       row_slice=(self.row_slice[0] - r0, self.row_slice[1] - r0))


def make_plan(height: int, width: int, spec: InputSpec, device: DeviceLike) -> ResizePlan:
    """The :class:`ResizePlan` for (height, width) frames under ``spec``, tensors on ``device``."""
    if not supports(spec):
        raise ValueError(f"interpolation {spec.interpolation!r} has no device implementation; "
                         f"supported: {', '.join(SUPPORTED_INTERPOLATIONS)} (use the CPU path)")
    nh, nw = output_size(height, width, spec)
    ch, cw = spec.crop
    if ch > nh or cw > nw:
        raise ValueError(f"crop {spec.crop} is larger than the resized frame ({nh}, {nw}); check the InputSpec")
    top, left = center_crop_box(nh, nw, spec.crop)
    dev = torch.device(device)

    def tensors(plan: AxisPlan, relative_to: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.from_numpy(np.ascontiguousarray(plan.index.reshape(-1) - relative_to)).to(dev)
        wgt = torch.from_numpy(np.ascontiguousarray(plan.weight)).to(dev)
        return idx, wgt

    if (nh, nw) == (height, width):
        return ResizePlan("crop", (height, width), (top, top + ch - 1), (left, left + cw - 1), None, None, 0,
                          None, None, 0, (left, left + cw), (top, top + ch))
    if spec.interpolation == "linear":
        scale_y, scale_x = height / nh, width / nw
        if scale_x == 2.0 and scale_y == 2.0:
            # cv::resize turns an exact 2x INTER_LINEAR downscale into its fast INTER_AREA.
            return ResizePlan("cv2_area2x", (height, width), (2 * top, 2 * (top + ch) - 1),
                              (2 * left, 2 * (left + cw) - 1), None, None, 0, None, None, 0,
                              (2 * left, 2 * (left + cw)), (2 * top, 2 * (top + ch)))
        hp = cv2_linear_axis_plan(width, nw, left, cw, clamp=True)
        vp = cv2_linear_axis_plan(height, nh, top, ch, clamp=False)
        mode = "cv2_linear"
    else:
        hp = aa_axis_plan(width, nw, left, cw, spec.interpolation)
        vp = aa_axis_plan(height, nh, top, ch, spec.interpolation)
        mode = "aa"
    rows = (vp.first, vp.last)
    cols = (hp.first, hp.last)
    h_index = h_weight = v_index = v_weight = None
    if not hp.identity:
        h_index, h_weight = tensors(hp, cols[0])
    if not vp.identity:
        v_index, v_w = tensors(vp, rows[0])
        v_weight = v_w.unsqueeze(-1)
    return ResizePlan(mode, (height, width), rows, cols, h_index, h_weight, hp.precision, v_index, v_weight,
                      vp.precision, (left, left + cw), (top, top + ch))


def _weighted_taps(x: torch.Tensor, dim: int, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """sum_k weight[o, k] * x[..., index[o, k], ...] along ``dim`` (int32, exact)."""
    n, k = weight.shape[0], weight.shape[1]
    taps = x.index_select(dim, index)                       # (..., n * K, ...)
    shape = list(x.shape)
    shape[dim:dim + 1] = [n, k]
    taps = taps.view(shape)
    w_shape = [1] * len(shape)
    w_shape[dim], w_shape[dim + 1] = n, k
    return (taps * weight.view(w_shape)).sum(dim=dim + 1, dtype=torch.int32)


def _round_shift_clamp(x: torch.Tensor, precision: int) -> torch.Tensor:
    """torch/PIL's ``clamp((x + 2^(p-1)) >> p, 0, 255)`` in place."""
    if precision > 0:
        x.add_(1 << (precision - 1)).bitwise_right_shift_(precision)
    return x.clamp_(0, 255)


def resize_crop(chw: torch.Tensor, plan: ResizePlan) -> torch.Tensor:
    """(3, H, W) uint8 (any strides) -> (3, ch, cw) int32 in [0, 255], channel order kept."""
    r0, r1 = plan.rows
    q0, q1 = plan.cols
    if plan.mode == "crop":
        (c0, c1), (s0, s1) = plan.col_slice, plan.row_slice
        return chw[:, s0:s1, c0:c1].to(torch.int32)
    if plan.mode == "cv2_area2x":
        (c0, c1), (s0, s1) = plan.col_slice, plan.row_slice
        x = chw[:, s0:s1, c0:c1].to(torch.int32)
        x = x[:, 0::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 0::2] + x[:, 1::2, 1::2]
        return x.add_(2).bitwise_right_shift_(2)
    x = chw[:, r0:r1 + 1, q0:q1 + 1].to(torch.int32)
    # horizontal pass (first, as both CPU kernels do)
    if plan.h_index is not None:
        assert plan.h_weight is not None
        h = _weighted_taps(x, 2, plan.h_index, plan.h_weight)
        if plan.mode == "aa":
            h = _round_shift_clamp(h, plan.h_precision)
    else:
        h = x        # identity columns: cols == col_slice
        if plan.mode == "cv2_linear":
            h = h * _CV2_COEF_SCALE
    # vertical pass
    if plan.v_index is None:
        s0, s1 = plan.row_slice
        v = h[:, s0 - r0:s1 - r0, :]
        if plan.mode == "cv2_linear":   # an unscaled vertical axis still goes through OpenCV's rounding
            v = (((v >> 4) * _CV2_COEF_SCALE) >> 16).add_(2) >> 2
        return v
    assert plan.v_weight is not None
    if plan.mode == "aa":
        n, k = plan.v_weight.shape[0], plan.v_weight.shape[1]
        taps = h.index_select(1, plan.v_index).view(h.shape[0], n, k, h.shape[2])
        v = (taps * plan.v_weight.view(1, n, k, 1)).sum(dim=2, dtype=torch.int32)
        return _round_shift_clamp(v, plan.v_precision)
    # OpenCV VResizeLinear<uchar>: two rows, each product taken >> 16 separately.
    n = plan.v_weight.shape[0]
    taps = h.index_select(1, plan.v_index).view(h.shape[0], n, 2, h.shape[2]) >> 4
    b = plan.v_weight.view(1, n, 2, 1)
    return ((taps[:, :, 0] * b[:, :, 0]) >> 16).add_((taps[:, :, 1] * b[:, :, 1]) >> 16).add_(2) >> 2


# --------------------------------------------------------------------------- preprocessor


class FramePreprocessor:
    """BGR uint8 frames -> normalised RGB crops on ``device``, numerically the CPU path's.

    Plans (index and weight tensors) are built once per source frame size.
    :meth:`rgb_uint8` gives what :func:`~realtime.core.preprocess.prepare_frame` gives
    (as CHW); :meth:`normalized` what ``normalize(prepare_frame(...))`` gives, cast
    to ``dtype``.
    """

    def __init__(self, spec: InputSpec, device: DeviceLike = "cuda") -> None:
        if not supports(spec):
            raise ValueError(f"interpolation {spec.interpolation!r} has no device implementation; "
                             f"supported: {', '.join(SUPPORTED_INTERPOLATIONS)} (use the CPU path)")
        self.spec = spec
        self.device = torch.device(device)
        self._plans: dict[tuple[int, int], ResizePlan] = {}
        self._mean = torch.tensor(spec.mean, dtype=torch.float32, device=self.device).view(3, 1, 1)
        self._std = torch.tensor(spec.std, dtype=torch.float32, device=self.device).view(3, 1, 1)
        self._subtract_mean = any(m != 0.0 for m in spec.mean)
        self._divide_std = any(s != 1.0 for s in spec.std)
        self._scale = torch.tensor(spec.scale, dtype=torch.float32, device=self.device)
        self._offset = torch.tensor(spec.offset, dtype=torch.float32, device=self.device)

    def plan(self, height: int, width: int) -> ResizePlan:
        key = (int(height), int(width))
        plan = self._plans.get(key)
        if plan is None:
            plan = make_plan(key[0], key[1], self.spec, self.device)
            self._plans[key] = plan
            logger.debug("device resize plan for %dx%d frames: %s", width, height, plan.mode)
        return plan

    def rgb_int(self, bgr_hwc: torch.Tensor, plan: Optional[ResizePlan] = None) -> torch.Tensor:
        """(H, W, 3) uint8 BGR on the device -> (3, ch, cw) int32 RGB (``plan``: one made for it)."""
        if bgr_hwc.ndim != 3 or bgr_hwc.shape[2] != 3 or bgr_hwc.dtype != torch.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 BGR frame, got {tuple(bgr_hwc.shape)} {bgr_hwc.dtype}")
        if plan is None:
            plan = self.plan(bgr_hwc.shape[0], bgr_hwc.shape[1])
        return resize_crop(bgr_hwc.permute(2, 0, 1), plan).flip(0)

    def rgb_uint8(self, bgr_hwc: torch.Tensor) -> torch.Tensor:
        """(H, W, 3) uint8 BGR -> (3, ch, cw) uint8 RGB, equal to ``prepare_frame`` (transposed)."""
        return self.rgb_int(bgr_hwc).to(torch.uint8)

    def normalize(self, rgb: torch.Tensor, dtype: torch.dtype = torch.float32,
                  out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(..., 3, h, w) integer RGB -> ``((x * scale + offset) - mean) / std`` in float32, then ``dtype``.

        The float32 operations are :func:`realtime.core.preprocess.normalize`'s, in its order.
        """
        x = rgb.to(torch.float32).mul_(self._scale)
        if self.spec.offset:
            x.add_(self._offset)
        if self._subtract_mean:
            x.sub_(self._mean)
        if self._divide_std:
            x.div_(self._std)
        if out is not None:
            out.copy_(x)
            return out
        return x if dtype == torch.float32 else x.to(dtype)

    def normalized(self, bgr_hwc: torch.Tensor, dtype: torch.dtype = torch.float32,
                   out: Optional[torch.Tensor] = None, plan: Optional[ResizePlan] = None) -> torch.Tensor:
        """(H, W, 3) uint8 BGR -> (3, ch, cw) normalised RGB in ``dtype`` (into ``out`` if given)."""
        return self.normalize(self.rgb_int(bgr_hwc, plan), dtype, out)
