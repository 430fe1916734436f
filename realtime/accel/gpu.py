"""Per-frame preprocessing on the model's device, into a preallocated device ring.

The CPU path (:func:`realtime.core.preprocess.prepare_frame` once per frame, then
:func:`realtime.core.preprocess.normalize` per window) costs about 0.65 ms of CPU per
1280x720 frame and a float copy per window. On a GPU the same work is a handful
of small kernels: of each decoded uint8 frame only the rows and columns the resize
reads are copied into a pinned host buffer and uploaded once (``non_blocking``),
then resized, centre cropped, flipped BGR->RGB and normalised into a slot of a
preallocated ``(capacity, 3, H, W)`` tensor in the model's dtype. A window is then
one ``index_select`` of prepared slots. On CUDA the kernels after the upload are
captured as one CUDA graph on the first frame of each size and replayed for every
later one: launching a dozen small kernels from Python costs more host time than
the GPU spends on them, and with dozens of cameras that host time is the limit.

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
version is much slower than :func:`~realtime.core.preprocess.prepare_frame` (about 20 ms
against 0.7 ms for a 720p antialiased frame): there it exists for testing only. ``"area"`` and
``"cubic"`` (OpenCV) are not implemented here: use the CPU path for them.

Threading model (CUDA): one :class:`DeviceFrameRing` per stream. Its writer (the
capture thread) calls :meth:`DeviceFrameRing.put` / :meth:`~DeviceFrameRing.push`,
whose work runs on the ring's own CUDA stream and ends by recording a per-slot
"ready" event. The reader (the inference thread) calls
:meth:`DeviceFrameRing.gather`, which makes *its* current stream wait for the
slots' events (a GPU-side wait, the host never blocks) and records a "consumed"
event that the next write waits for before touching the ring. A host-side
:class:`~realtime.stream.ring.FrameRing` can keep choosing windows by timestamp while
holding, per frame, the ``[slot, sequence]`` handle :meth:`DeviceFrameRing.push_handle`
returns instead of pixels; :meth:`DeviceFrameRing.gather` checks the sequences.
"""

from __future__ import annotations

import logging
import math
import threading
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Optional, Sequence, Union

import numpy as np
import torch

from realtime.accel.graph_gate import CaptureGate
from realtime.core.preprocess import center_crop_box, output_size
from realtime.core.types import InputSpec

logger = logging.getLogger(__name__)

SUPPORTED_INTERPOLATIONS: tuple[str, ...] = ("linear", "pil_bilinear", "pil_bicubic")
"""``InputSpec.interpolation`` values this module reproduces (the others need the CPU path)."""

_CV2_COEF_BITS = 11
_CV2_COEF_SCALE = 1 << _CV2_COEF_BITS   # OpenCV's INTER_RESIZE_COEF_SCALE
_BICUBIC_A = -0.5                       # torch's (and PIL's) antialiased bicubic coefficient

DeviceLike = Union[str, torch.device]


CUDA_GRAPH_CAPTURE_LOCK = CaptureGate()
"""Held exclusively (``with CUDA_GRAPH_CAPTURE_LOCK:``) while any CUDA graph of this process is
being captured, and around every device-wide synchronize; held shared
(``CUDA_GRAPH_CAPTURE_LOCK.shared()``) by each frame ring while it queues a frame's work. torch
registers its random number generators with a graph as its capture begins, so two captures
overlapping in different threads (a ring per camera, the model's batches) fail; work queued on a
stream while it is being captured (torch's small stream pool can hand a ring the very stream a
capture uses) breaks the capture; a device-wide synchronize in one thread invalidates a capture
running in another; and a failed graph's destructor can abort the process."""

_FAILED_CAPTURES: list = []     # graphs whose capture failed, kept alive: destroying one can abort


def device_synchronize(device: DeviceLike) -> None:
    """``torch.cuda.synchronize(device)``, never while another thread captures a CUDA graph."""
    with CUDA_GRAPH_CAPTURE_LOCK:
        torch.cuda.synchronize(device)


@contextmanager
def exclusive_capture(graph: "torch.cuda.CUDAGraph") -> Iterator[None]:
    """Capture ``graph`` inside this block alone (:data:`CUDA_GRAPH_CAPTURE_LOCK`); if the capture
    fails, the graph is kept alive rather than destroyed, and the error goes on."""
    with CUDA_GRAPH_CAPTURE_LOCK:
        try:
            yield
        except BaseException:
            _FAILED_CAPTURES.append(graph)
            raise


class StaleFrameError(LookupError):
    """A slot asked for by :meth:`DeviceFrameRing.gather` holds a newer frame than expected."""


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


# --------------------------------------------------------------------------- ring


class DeviceFrameRing:
    """A preallocated ``(capacity, 3, H, W)`` ring of prepared frames on the model's device.

    Writer (one capture thread): :meth:`put` (into a given slot) or :meth:`push` (next
    slot, round robin; returns it). Reader (the inference thread): :meth:`gather`,
    which assembles windows by index. On CUDA the upload goes through a small pool of
    pinned staging buffers (``staging``, reused once their copy has finished), the
    preprocessing is a replayed CUDA graph (``cuda_graphs=False``: eager kernels) and all
    work runs on the ring's own stream; see the module docstring for the ordering.

    Slot lifetime: a slot is reused after ``capacity`` further pushes. Every write gets a
    sequence number (1, 2, ...; :meth:`put` returns it, :meth:`push_handle` returns
    ``[slot, sequence]``); :meth:`gather` given the expected ``sequences`` raises
    :class:`StaleFrameError` instead of returning a window whose slot was rewritten in
    the meantime (or while it is being rewritten: asked for then, a slot raises
    :class:`StaleFrameError` even without ``sequences``). The check and the queued copy
    happen under the ring's lock, and every later write waits (on the GPU) for that copy,
    so a window that passes the check is the one asked for. Make the ring a few slots larger than the
    :class:`~realtime.stream.ring.FrameRing` holding the handles so this stays rare.
    """

    def __init__(self, capacity: int, spec: InputSpec, device: DeviceLike = "cuda",
                 dtype: torch.dtype = torch.float32, *, staging: int = 3, cuda_graphs: bool = True) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.spec = spec
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.dtype = dtype
        self.capacity = int(capacity)
        self.preprocessor = FramePreprocessor(spec, self.device)
        ch, cw = spec.crop
        self.frames = torch.zeros((self.capacity, 3, ch, cw), dtype=dtype, device=self.device)
        self.written = 0
        self._sequence = np.zeros(self.capacity, dtype=np.int64)   # 0: never written, -1: being written
        self._head = 0
        self._lock = threading.Lock()
        self._cuda = self.device.type == "cuda"
        self._stream: Optional[torch.cuda.Stream] = None
        self._ready: list[Optional[torch.cuda.Event]] = [None] * self.capacity
        self._consumed: Optional[torch.cuda.Event] = None
        # CUDA: pinned host buffers (reused once their upload has finished), one device copy of
        # the part of the frame the resize reads, the prepared frame, and the graph between them.
        self.cuda_graphs = bool(cuda_graphs)
        self._staging_count = max(1, int(staging))
        self._staged_size: Optional[tuple[int, int]] = None
        self._roi = (0, 0, 0, 0)
        self._roi_plan: Optional[ResizePlan] = None
        self._host: list[torch.Tensor] = []
        self._host_np: list[np.ndarray] = []
        self._host_done: list[Optional[torch.cuda.Event]] = []
        self._staging_next = 0
        self._device_in: Optional[torch.Tensor] = None
        self._prepared: Optional[torch.Tensor] = None
        self._graph: Optional[torch.cuda.CUDAGraph] = None
        self._graph_tries = 0
        if self._cuda:
            self._stream = torch.cuda.Stream(self.device)
            with CUDA_GRAPH_CAPTURE_LOCK.shared():
                self._stream.wait_stream(torch.cuda.current_stream(self.device))   # after the zero fill

    def __repr__(self) -> str:
        return (f"DeviceFrameRing(capacity={self.capacity}, crop={self.spec.crop}, device={self.device}, "
                f"dtype={self.dtype}, interpolation={self.spec.interpolation!r})")

    # ------------------------------------------------------------------ writer

    def _upload(self, bgr: np.ndarray) -> torch.Tensor:
        """CPU rings: the frame as an (H, W, 3) uint8 tensor."""
        if not (bgr.flags.writeable and bgr.flags.c_contiguous):
            bgr = np.array(bgr, order="C", copy=True)
        return torch.from_numpy(bgr).to(self.device)

    def _stage(self, height: int, width: int) -> None:
        """Buffers for frames of a new size: pinned host buffers for the part of the frame the
        resize reads, its device copy and the prepared output; any old graph is dropped."""
        for event in self._host_done:          # let uploads from the old buffers finish
            if event is not None:
                event.synchronize()
        full = self.preprocessor.plan(height, width)
        self._roi = (full.rows[0], full.rows[1] + 1, full.cols[0], full.cols[1] + 1)
        self._roi_plan = full.cropped_to_reads()
        shape = (*self._roi_plan.src_size, 3)
        self._host = [torch.empty(shape, dtype=torch.uint8, pin_memory=True) for _ in range(self._staging_count)]
        self._host_np = [h.numpy() for h in self._host]
        self._host_done = [None] * self._staging_count
        self._device_in = torch.empty(shape, dtype=torch.uint8, device=self.device)
        self._prepared = torch.empty((3, *self.spec.crop), dtype=self.dtype, device=self.device)
        self._graph = None
        self._graph_tries = 0
        self._staged_size = (height, width)

    def _prepare_from_device_in(self) -> None:
        self.preprocessor.normalized(self._device_in, self.dtype, out=self._prepared, plan=self._roi_plan)

    def _capture(self) -> None:
        """Record the preprocessing kernels as one CUDA graph (after they have run once eagerly).

        All of it, the streams' waits on each other included, holds
        :data:`CUDA_GRAPH_CAPTURE_LOCK` exclusively: the capture stream comes from torch's shared
        pool and may be another ring's stream or the one a capture elsewhere is using."""
        self._graph_tries += 1
        assert self._stream is not None
        graph = torch.cuda.CUDAGraph()
        with CUDA_GRAPH_CAPTURE_LOCK:
            capture_stream = torch.cuda.Stream(self.device)
            capture_stream.wait_stream(self._stream)
            try:
                with exclusive_capture(graph), torch.cuda.stream(capture_stream):
                    graph.capture_begin(capture_error_mode="thread_local")
                    try:
                        self._prepare_from_device_in()
                    finally:
                        graph.capture_end()
            except RuntimeError as exc:
                self.cuda_graphs = False
                logger.warning("frame preprocessing runs without a CUDA graph (capture failed: %s)", exc)
                return
            self._stream.wait_stream(capture_stream)
        self._graph = graph

    def _stage_host(self, bgr: np.ndarray) -> int:
        """Copy what the resize reads of ``bgr`` into a free pinned buffer; returns which one."""
        if self._staged_size != bgr.shape[:2]:      # (put holds the gate exclusively then)
            self._stage(bgr.shape[0], bgr.shape[1])
        k = self._staging_next
        self._staging_next = (k + 1) % self._staging_count
        done = self._host_done[k]
        if done is not None:
            done.synchronize()          # its previous upload has finished: the host buffer is free
        r0, r1, q0, q1 = self._roi
        np.copyto(self._host_np[k], bgr[r0:r1, q0:q1])
        return k

    def _enqueue(self, k: int, slot: int, consumed: Optional["torch.cuda.Event"]) -> "torch.cuda.Event":
        """Upload pinned buffer ``k`` and prepare it into ``slot`` on the ring's stream, after
        ``consumed`` (the gathers that may still read the slot); returns the write's event.

        Holds :data:`CUDA_GRAPH_CAPTURE_LOCK` shared: torch hands out streams from a small
        shared pool, so another ring's stream, or a graph's capture stream, can be this very
        stream, and work queued on a stream while it is being captured breaks the capture.
        The first frame of a size runs eagerly; its kernels are then captured as a graph
        (exclusively, after this frame's work is queued)."""
        assert self._stream is not None and self._prepared is not None and self._device_in is not None
        with CUDA_GRAPH_CAPTURE_LOCK.shared(), torch.cuda.stream(self._stream):
            if consumed is not None:
                self._stream.wait_event(consumed)
            self._device_in.copy_(self._host[k], non_blocking=True)
            if self._graph is not None:
                self._graph.replay()
            else:
                self._prepare_from_device_in()
            self.frames[slot].copy_(self._prepared)
            ready = torch.cuda.Event()
            ready.record(self._stream)
        self._host_done[k] = ready
        if self._capture_pending:
            self._capture()
        return ready

    @property
    def _capture_pending(self) -> bool:
        """The preprocessing of this frame size has not been captured as a graph yet (nor failed to)."""
        return self._graph is None and self.cuda_graphs and self._graph_tries == 0

    def put(self, slot: int, bgr: np.ndarray) -> int:
        """Prepare the (H, W, 3) uint8 BGR frame ``bgr`` into ``slot``; returns the write's sequence number.

        One writer thread per ring. On CUDA the ring's lock is held only to book the write
        (the slot's sequence becomes -1, "being written", so a gather expecting the old frame
        fails from here on; and the newest "consumed" event is read, so the write waits for
        every gather that passed its check) and to publish it (sequence and ready event):
        the copy into the pinned buffer and the kernel launches run outside it, so the
        inference thread's gathers never wait behind a frame upload."""
        if not 0 <= slot < self.capacity:
            raise IndexError(f"slot {slot} outside a ring of {self.capacity}")
        if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 BGR frame, got {bgr.shape} {bgr.dtype}")
        with torch.no_grad():
            if not self._cuda:
                with self._lock:
                    self.preprocessor.normalized(self._upload(bgr), self.dtype, out=self.frames[slot])
                    self.written += 1
                    self._sequence[slot] = self.written
                    return self.written
            first_of_size = self._staged_size != bgr.shape[:2] or self._capture_pending
            k = None if first_of_size else self._stage_host(bgr)
            with self._lock:
                self.written += 1
                sequence = self.written
                self._sequence[slot] = -1        # being written
                self._ready[slot] = None
                consumed = self._consumed
            # The first frame of a size (new buffers, an eager run, the graph's capture) is one
            # exclusive hold, so 64 cameras starting together wait for 64 holds, not three times
            # that. (Never with the ring's lock held: gathers take that lock, then the gate.)
            with CUDA_GRAPH_CAPTURE_LOCK if first_of_size else nullcontext():
                ready = self._enqueue(self._stage_host(bgr) if k is None else k, slot, consumed)
            with self._lock:
                self._sequence[slot] = sequence
                self._ready[slot] = ready
            return sequence

    def _next_slot(self) -> int:
        with self._lock:
            slot = self._head
            self._head = (self._head + 1) % self.capacity
            return slot

    def push(self, bgr: np.ndarray) -> int:
        """Prepare ``bgr`` into the next slot (round robin) and return that slot."""
        slot = self._next_slot()
        self.put(slot, bgr)
        return slot

    def push_handle(self, bgr: np.ndarray) -> np.ndarray:
        """:meth:`push`, returning ``[slot, sequence]`` (int64): what a host-side ring stores per frame."""
        slot = self._next_slot()
        sequence = self.put(slot, bgr)
        return np.array([slot, sequence], dtype=np.int64)

    def ensure_capacity(self, capacity: int) -> None:
        """Grow to ``capacity`` slots (never shrinks); slots already written keep their numbers."""
        with self._lock:
            if capacity <= self.capacity:
                return
            ch, cw = self.spec.crop
            frames = torch.zeros((capacity, 3, ch, cw), dtype=self.dtype, device=self.device)
            if self._cuda:
                # Rare (the source's frame rate went up): finish everything in flight, so the
                # old tensor is neither being written nor read when it is freed.
                device_synchronize(self.device)
                frames[: self.capacity].copy_(self.frames)
                device_synchronize(self.device)
                self._ready += [None] * (capacity - self.capacity)
            else:
                frames[: self.capacity].copy_(self.frames)
            self.frames = frames
            self._sequence = np.concatenate([self._sequence, np.zeros(capacity - self.capacity, np.int64)])
            self.capacity = capacity

    # ------------------------------------------------------------------ reader

    def gather(self, slots: Union[Sequence[int], Sequence[Sequence[int]], np.ndarray],
               out: Optional[torch.Tensor] = None,
               sequences: Optional[Union[Sequence[int], Sequence[Sequence[int]], np.ndarray]] = None,
               ) -> torch.Tensor:
        """The frames of ``slots`` as one tensor: (T,) slots -> (T, 3, H, W); (B, T) -> (B, T, 3, H, W).

        ``out`` (contiguous, the right shape and dtype, on the device), e.g. one row of a
        CUDA-graph input buffer, receives the frames without another copy. On CUDA the
        copy is queued on the caller's current stream after the slots' writes.
        ``sequences`` (same shape as ``slots``): the sequence numbers the slots must still
        hold, else :class:`StaleFrameError` (nothing is copied). :func:`gather_windows`
        gathers a batch of windows from many rings at once.
        """
        slot_array = np.ascontiguousarray(np.asarray(slots, dtype=np.int64))
        shape = slot_array.shape
        flat = self._checked_slots(slot_array)
        expected = None if sequences is None else np.asarray(sequences, dtype=np.int64).reshape(-1)
        if expected is not None and expected.shape != flat.shape:
            raise ValueError(f"sequences {np.shape(sequences)} do not match slots {shape}")
        ch, cw = self.spec.crop
        # Ring lock first, then the gate shared (the order everywhere): the caller's stream may be
        # a pooled stream that a capture elsewhere is using.
        gate = CUDA_GRAPH_CAPTURE_LOCK.shared() if self._cuda else nullcontext()
        with self._lock, gate, torch.no_grad():
            problem = self._unreadable_locked(flat, expected)
            if problem is not None:
                raise StaleFrameError(problem)
            stream = torch.cuda.current_stream(self.device) if self._cuda else None
            event = self._ready_event_locked(flat)
            if stream is not None and event is not None:
                stream.wait_event(event)
            index = torch.from_numpy(flat)
            if self._cuda:
                index = index.to(self.device, non_blocking=True)
            target = None if out is None else out.view(-1, 3, ch, cw)
            result = torch.index_select(self.frames, 0, index, out=target) if target is not None \
                else torch.index_select(self.frames, 0, index)
            if stream is not None:
                self._consumed = _recorded_event(stream)
        return result.view(*shape, 3, ch, cw)

    def _checked_slots(self, slots: np.ndarray) -> np.ndarray:
        """``slots`` flattened, every one inside the ring (else IndexError)."""
        flat = slots.reshape(-1)
        if flat.size and (int(flat.min()) < 0 or int(flat.max()) >= self.capacity):
            raise IndexError(f"slots {flat.tolist()} outside a ring of {self.capacity}")
        return flat

    def _unreadable_locked(self, flat: np.ndarray, expected: Optional[np.ndarray]) -> Optional[str]:
        """Why these slots cannot be read as asked (a slot rewritten since its handle was taken,
        or being written), or None. Ring lock held."""
        if expected is not None:
            stale = int(np.count_nonzero(self._sequence[flat] != expected))
            if stale:
                return f"{stale} of {flat.size} slots were rewritten since their handle was taken"
        elif self._cuda and flat.size and (self._sequence[flat] < 0).any():
            return "a slot asked for is being written"
        return None

    def _ready_event_locked(self, flat: np.ndarray) -> Optional["torch.cuda.Event"]:
        """The event after which these slots' frames are on the device (CUDA; ring lock held).
        Writes run in order on the ring's stream, so the newest slot's write is the one to wait for."""
        if not self._cuda or not flat.size:
            return None
        return self._ready[int(flat[int(np.argmax(self._sequence[flat]))])]

    def synchronize(self) -> None:
        """Wait until every write queued so far has finished (CUDA; a no-op on CPU)."""
        if self._stream is not None:
            with CUDA_GRAPH_CAPTURE_LOCK.shared():
                self._stream.synchronize()


def _recorded_event(stream: "torch.cuda.Stream") -> "torch.cuda.Event":
    event = torch.cuda.Event()
    event.record(stream)
    return event


def gather_windows(windows: Sequence[tuple[DeviceFrameRing, np.ndarray, np.ndarray]],
                   out: torch.Tensor) -> list[int]:
    """Gather a batch of windows, each from its own ring, into ``out[0]``, ``out[1]``, ...

    Window ``i`` is ``(ring, slots, sequences)``: its (T,) slots and the sequence numbers they
    must still hold. A window with a slot rewritten (or being written) since its handles were
    taken is skipped; returns the positions of the windows gathered, in order (``out[j]`` holds
    window ``kept[j]``). What :meth:`DeviceFrameRing.gather` does per window, done once per
    batch where it can be: one host-to-device copy of all the indices and one "consumed" event
    for all the rings; only the waits for each window's frames and its ``index_select`` are per
    window. Every ring's lock is held from its check until that event is recorded, so a write
    booked after a check waits (on the GPU) for the copy, as with ``gather``; the locks are taken
    in one order (by ``id``), and before the capture gate, as everywhere.
    """
    if not windows:
        return []
    device = windows[0][0].device
    length = out.shape[1] if out.ndim == 5 else -1
    rings = sorted({id(ring): ring for ring, _, _ in windows}.values(), key=id)
    checked = []
    for ring, slots, sequences in windows:
        if ring.device != device or ring.dtype != out.dtype:
            raise ValueError(f"{ring!r} does not match the batch ({device}, {out.dtype})")
        flat = ring._checked_slots(np.asarray(slots, dtype=np.int64))
        expected = np.asarray(sequences, dtype=np.int64).reshape(-1)
        if flat.size != length or expected.shape != flat.shape:
            raise ValueError(f"a window of {flat.size} slots and {expected.size} sequences does not fit "
                             f"{tuple(out.shape)}")
        checked.append((ring, flat, expected))
    if len(windows) > out.shape[0]:
        raise ValueError(f"{len(windows)} windows do not fit {tuple(out.shape)}")
    cuda = device.type == "cuda"
    with ExitStack() as held:
        for ring in rings:
            held.enter_context(ring._lock)
        if cuda:
            held.enter_context(CUDA_GRAPH_CAPTURE_LOCK.shared())
        held.enter_context(torch.no_grad())
        kept: list[int] = []
        waits: dict[int, "torch.cuda.Event"] = {}
        for i, (ring, flat, expected) in enumerate(checked):
            problem = ring._unreadable_locked(flat, expected)
            if problem is not None:
                logger.debug("%r: window skipped: %s", ring, problem)
                continue
            event = ring._ready_event_locked(flat)
            if event is not None:
                waits[id(event)] = event
            kept.append(i)
        if not kept:
            return kept
        stream = torch.cuda.current_stream(device) if cuda else None
        if stream is not None:
            for event in waits.values():
                stream.wait_event(event)
        index = torch.from_numpy(np.concatenate([checked[i][1] for i in kept]))
        if cuda:
            index = index.to(device, non_blocking=True)
        for j, i in enumerate(kept):
            ring = checked[i][0]
            ch, cw = ring.spec.crop
            torch.index_select(ring.frames, 0, index[j * length:(j + 1) * length], out=out[j].view(-1, 3, ch, cw))
        if stream is not None:
            consumed = _recorded_event(stream)
            for ring in rings:
                ring._consumed = consumed
    return kept
