"""I3D fine-tuned on the user's own activities (``realtime finetune``), as a ClipClassifier.

A fine-tuned model is a directory:

``realtime_model.json``
    the manifest: ``format``, ``kind`` (``"i3d-finetuned"``), ``base``
    (``"i3d-kinetics400"``), ``labels``, ``num_frames``, ``window_seconds``,
    ``input_spec``, ``split`` (the last frozen I3D block, or null when every
    layer was trained), ``head`` (its settings) and a ``training`` summary;
``model.safetensors``
    the trained weights: the I3D blocks after ``split`` (initialised from the
    Kinetics weights, then trained) and the new head. The frozen lower blocks
    are *not* duplicated: they are read from the Kinetics-400 weights in the
    cache (:func:`realtime.models.i3d_weights.weights_path`). With
    ``split: null`` the file holds every layer.

The network is :class:`FineTunedI3D`: ``lower`` (frozen I3D blocks up to and
including ``split``), ``top`` (the remaining I3D blocks up to ``Mixed_5c``) and
``head`` (:class:`MotionHead`).

Why the default head looks the way it does (measured on generated clips whose
classes differ only in motion: left/right/up/down/clockwise/anticlockwise, 10
training clips per class). Kinetics I3D's high-level features are dominated by
appearance: with a handful of clips per class every classifier on ``Mixed_5c``
or ``Mixed_4f`` - pooled linear, a 3-D conv head over the T x H x W map, or
``Mixed_5b``/``Mixed_5c`` themselves retrained - learnt left/right/up/down but
stayed at chance on clockwise vs anticlockwise (67-92 % overall). The direction
of time *is* in the features, under the appearance: the difference between a
layer's output for a clip and for the same clip played backwards (flipped back
into line) cancels everything that looks the same either way. That
time-antisymmetric part of ``Mixed_3c`` separates clockwise from anticlockwise
with a linear model (99 % on held-out clips), and a small 3-D conv net over it,
on the T x H x W grid of ``Mixed_5c``, gets all six classes right. The
default ``motion`` head adds that branch to I3D's pooled ``Mixed_5c`` features
(kept for activities that differ in what is seen, e.g. exercises). The cost is a
second pass of the clip, played backwards, through the blocks up to
``Mixed_3c`` (about 1.8x the compute of plain I3D).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError
from ..preprocess import INTERPOLATIONS, normalize
from ..types import InputSpec
from .i3d import (
    _DTYPES,
    INPUT_SPEC,
    KINETICS_FPS,
    InceptionI3d,
    _resolve_device,
    _resolve_dtype,
    load_flax,
    validate_clips,
)
from .i3d_weights import PathLike, read_weights, weights_path

logger = logging.getLogger(__name__)

MANIFEST = "realtime_model.json"
WEIGHTS = "model.safetensors"
FORMAT = "realtime/finetuned-i3d/1"
KIND = "i3d-finetuned"
BASE = "i3d-kinetics400"

FEATURE_CHANNELS = 1024
"""Channels of I3D's last block (``Mixed_5c``), what the head sees."""

SPLITS: tuple[str, ...] = ("Mixed_4f", "Mixed_5b", "Mixed_5c")
"""Where the frozen part may end. ``Mixed_5c``: only the new head is trained (the default on
CPU); ``Mixed_5b``: ``Mixed_5c`` too; ``Mixed_4f``: ``Mixed_5b`` and ``Mixed_5c`` too."""

_FROZEN_UNTIL = {
    # The parameter-free max pool after Mixed_4f goes with the frozen part: the cached
    # features are then 4x smaller ((832, T/8, 7, 7) instead of (832, T/4, 14, 14)).
    "Mixed_4f": "MaxPool3d_5a_2x2",
    "Mixed_5b": "Mixed_5b",
    "Mixed_5c": "Mixed_5c",
}

MIN_FRAMES = 8
"""Fewest frames per window: I3D divides time by 8 before Mixed_5b."""


# --------------------------------------------------------------------------- head


HEAD_KINDS: tuple[str, ...] = ("motion", "conv", "linear")

MOTION_LAYER = "Mixed_3c"
"""Where the motion branch taps I3D: the last block before time is first pooled (T/2, H/8)."""
MOTION_CHANNELS = 480


@dataclass(frozen=True)
class HeadConfig:
    """Settings of :class:`MotionHead`.

    ``kind``:

    ``"motion"`` (default)
        two branches whose logits are added. The *motion* branch is a small 3-D conv net
        over the time-antisymmetric part of I3D's ``Mixed_3c`` features,
        ``f(x) - flip_t(f(reversed x))``: whatever looks the same played forwards and
        backwards (appearance, background, symmetric motion) cancels, what depends on the
        direction of time (left vs right, clockwise vs anticlockwise, sitting down vs
        standing up) remains, on the T x H x W grid of ``Mixed_5c``. The *appearance*
        branch is I3D's own kind of head on ``Mixed_5c`` (pooled, linear), switched off for
        a random half of the training samples (``branch_dropout``) so it cannot take over
        with appearance cues that only happen to differ between a few training clips.
    ``"conv"``
        the 3-D conv net over the ``Mixed_5c`` map alone (no motion branch).
    ``"linear"``
        average over time and space, then a linear layer: I3D's head, kept for comparison.

    ``hidden``: channels of the conv layers. ``dropout``: before each final linear layer.
    """

    kind: str = "motion"
    hidden: int = 128
    dropout: float = 0.5
    branch_dropout: float = 0.8

    def __post_init__(self) -> None:
        if self.kind not in HEAD_KINDS:
            raise ValueError(f"head kind must be one of {', '.join(HEAD_KINDS)}, got {self.kind!r}")
        if self.hidden < 1:
            raise ValueError(f"head hidden channels must be >= 1, got {self.hidden}")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.branch_dropout < 1.0:
            raise ValueError(f"head dropouts must be in [0, 1), got {self.dropout}, {self.branch_dropout}")

    @property
    def uses_motion(self) -> bool:
        return self.kind == "motion"


def _conv_net(in_channels: int, hidden: int) -> nn.Sequential:
    """1x1x1 conv to ``hidden`` channels, ReLU, 3x3x3 conv (padding 1), ReLU: sees where and when."""
    return nn.Sequential(nn.Conv3d(in_channels, hidden, 1), nn.ReLU(inplace=True),
                         nn.Conv3d(hidden, hidden, 3, padding=1), nn.ReLU(inplace=True))


class MotionHead(nn.Module):
    """Logits from the ``Mixed_5c`` map (B, 1024, T, H, W) and, for ``kind="motion"``, the
    motion map (B, 480, T, H, W); see :class:`HeadConfig`. Nothing is pooled before the
    3-D convolutions, which see the whole T x H x W grid."""

    def __init__(self, num_classes: int, config: HeadConfig = HeadConfig()) -> None:
        super().__init__()
        self.config = config
        self.motion: Optional[nn.Sequential] = None
        self.motion_fc: Optional[nn.Linear] = None
        self.body: nn.Module = nn.Identity()
        width = FEATURE_CHANNELS
        if config.kind == "motion":
            self.motion = _conv_net(MOTION_CHANNELS, config.hidden)
            self.motion_fc = nn.Linear(config.hidden, num_classes)
        elif config.kind == "conv":
            self.body = _conv_net(FEATURE_CHANNELS, config.hidden)
            width = config.hidden
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor, motion: Optional[torch.Tensor] = None) -> torch.Tensor:
        logits = self.fc(self.dropout(self.body(x).mean(dim=(2, 3, 4))))
        if self.motion is None:
            return logits
        if motion is None:
            raise ValueError("the motion head needs the motion map")
        assert self.motion_fc is not None
        p = self.config.branch_dropout
        if self.training and p > 0:
            keep = (torch.rand(logits.shape[0], 1, device=logits.device) >= p).to(logits.dtype)
            logits = logits * keep / (1.0 - p)
        return logits + self.motion_fc(self.dropout(self.motion(motion).mean(dim=(2, 3, 4))))


def _pooled_size(size: int) -> int:
    """Size of an axis after I3D's two stride-2 "SAME" pools between Mixed_3c and Mixed_5c."""
    half = (size + 1) // 2
    return (half + 1) // 2


def motion_map(forward: torch.Tensor, backward: torch.Tensor) -> torch.Tensor:
    """The time-antisymmetric part of a feature map, on the Mixed_5c grid.

    ``forward`` is the layer's output for a clip, ``backward`` for the same clip played
    backwards; ``backward`` is flipped back in time so both line up, subtracted, and the
    difference average-pooled to the grid ``Mixed_5c`` has (time and space / 4).
    """
    t, h, w = forward.shape[-3:]
    diff = forward - backward.flip(2)
    return F.adaptive_avg_pool3d(diff, (_pooled_size(t), _pooled_size(h), _pooled_size(w)))


# --------------------------------------------------------------------------- network


Features = tuple[torch.Tensor, Optional[torch.Tensor]]
"""(input of the trained part, motion map or None): what the frozen part produces per clip."""


class FineTunedI3D(nn.Module):
    """I3D cut in three: ``lower`` (frozen), ``top`` (trained I3D blocks), ``head`` (new).

    Input: (B, 3, T, H, W) RGB in [-1, 1] (channels-last), H and W any size the network
    accepts (224 by default). ``split`` is one of :data:`SPLITS` (the last frozen block),
    or None for a network trained end to end (``lower`` is then empty and ``top`` holds
    every block). With the ``motion`` head the clip is also run backwards through the
    blocks up to ``Mixed_3c`` (about 80 % of I3D's compute: the early, high-resolution
    layers dominate).
    """

    def __init__(self, num_classes: int, split: Optional[str] = "Mixed_5c",
                 head: HeadConfig = HeadConfig()) -> None:
        super().__init__()
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)} or None, got {split!r}")
        self.split = split
        layers = list(InceptionI3d(num_classes=1).features.named_children())
        names = [name for name, _ in layers]
        cut = 0 if split is None else names.index(_FROZEN_UNTIL[split]) + 1
        self._motion_index = names.index(MOTION_LAYER) if head.uses_motion else -1
        self._cut = cut
        self.lower = nn.Sequential(OrderedDict(layers[:cut]))
        self.top = nn.Sequential(OrderedDict(layers[cut:]))
        self.head = MotionHead(num_classes, head)
        self.to(memory_format=torch.channels_last_3d)

    @property
    def trained_layers(self) -> list[str]:
        """Names of the I3D blocks that are trained (those in ``top`` with weights)."""
        return [name for name, module in self.top.named_children() if any(True for _ in module.parameters())]

    def load_kinetics(self, variables: Mapping[str, object]) -> None:
        """Initialise ``lower`` and ``top`` from the Kinetics-400 I3D weights (flat Flax keys).

        The original logits layer is dropped; the head keeps its fresh initialisation.
        """
        load_flax(nn.ModuleList([self.lower, self.top]),
                  {k: v for k, v in variables.items() if not k.startswith("params/Logits/")})

    def _run(self, blocks: nn.Sequential, offset: int, h: torch.Tensor,
             with_backward: bool) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Run ``blocks`` (global indices from ``offset``) on ``h``. With ``with_backward`` the
        clip played backwards goes along in the same batch (one batch of 2B runs faster than two
        of B) up to the motion layer, where the motion map is taken. Returns (h, motion or None)."""
        motion = None
        n = h.shape[0]
        if with_backward:
            h = torch.cat([h, h.flip(2)]).contiguous(memory_format=torch.channels_last_3d)
        for i, block in enumerate(blocks, start=offset):
            h = block(h)
            if with_backward and i == self._motion_index:
                motion = motion_map(h[:n], h[n:])
                h = h[:n]
        return h, motion

    def _needs_backward(self, in_lower: bool) -> bool:
        return self._motion_index >= 0 and (self._motion_index < self._cut) == in_lower

    def features(self, x: torch.Tensor) -> Features:
        """The frozen part, what ``realtime finetune`` caches once per clip view:
        (``lower``'s output, the motion map if the motion layer is in ``lower``)."""
        x = x.contiguous(memory_format=torch.channels_last_3d)
        return self._run(self.lower, 0, x, self._needs_backward(in_lower=True))

    def forward_features(self, features: torch.Tensor, motion: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits from the output of :meth:`features` (with ``split=None``: from the clip itself)."""
        h = features.contiguous(memory_format=torch.channels_last_3d)
        h, late = self._run(self.top, self._cut, h, motion is None and self._needs_backward(in_lower=False))
        return self.head(h, motion if motion is not None else late)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"expected (B, 3, T, H, W) input, got {tuple(x.shape)}")
        return self.forward_features(*self.features(x))

    def trained_state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors ``model.safetensors`` holds: ``top`` and ``head`` (and ``lower`` if not frozen)."""
        keep = ("top.", "head.") if self.split is not None else ("lower.", "top.", "head.")
        return {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items() if k.startswith(keep)}


# --------------------------------------------------------------------------- manifest


def spec_to_json(spec: InputSpec) -> dict[str, Any]:
    data = asdict(spec)
    data["crop"] = list(spec.crop)
    data["mean"], data["std"] = list(spec.mean), list(spec.std)
    return data


def spec_from_json(data: Mapping[str, Any]) -> InputSpec:
    spec = InputSpec(resize_short=int(data["resize_short"]),
                     crop=(int(data["crop"][0]), int(data["crop"][1])),
                     scale=float(data["scale"]), offset=float(data["offset"]),
                     mean=tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
                     std=tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
                     interpolation=str(data["interpolation"]))
    if spec.interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {spec.interpolation!r}")
    return spec


def input_spec_for_size(size: int) -> InputSpec:
    """I3D's preprocessing at crop ``size`` (224: the Kinetics setting, short side 256)."""
    if size == INPUT_SPEC.crop[0]:
        return INPUT_SPEC
    return InputSpec(resize_short=int(round(size * INPUT_SPEC.resize_short / INPUT_SPEC.crop[0])),
                     crop=(size, size), scale=INPUT_SPEC.scale, offset=INPUT_SPEC.offset,
                     interpolation=INPUT_SPEC.interpolation)


@dataclass(frozen=True)
class Manifest:
    """The contents of ``realtime_model.json``."""

    labels: tuple[str, ...]
    num_frames: int
    window_seconds: float
    input_spec: InputSpec
    split: Optional[str]
    head: HeadConfig
    base: str = BASE
    training: Optional[dict[str, Any]] = None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "kind": KIND, "base": self.base, "labels": list(self.labels),
            "num_frames": self.num_frames, "window_seconds": self.window_seconds,
            "fps": self.num_frames / self.window_seconds, "input_spec": spec_to_json(self.input_spec),
            "split": self.split, "head": asdict(self.head), "weights": WEIGHTS,
            "training": self.training or {},
        }


def is_finetuned_dir(path: Union[str, os.PathLike[str]]) -> bool:
    """True if ``path`` is a directory holding ``realtime_model.json``."""
    return (Path(path).expanduser() / MANIFEST).is_file()


def read_manifest(directory: Union[str, os.PathLike[str]]) -> Manifest:
    """Read and check ``DIR/realtime_model.json``; ModelError naming the file when it is wrong."""
    path = Path(directory).expanduser() / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise ModelError(f"{path}: not a fine-tuned I3D model (kind {data.get('kind') if isinstance(data, dict) else None!r}, "
                         f"expected {KIND!r})")
    if data.get("format") != FORMAT:
        raise ModelError(f"{path}: unsupported format {data.get('format')!r} (this version reads {FORMAT!r})")
    try:
        labels = tuple(str(x) for x in data["labels"])
        manifest = Manifest(
            labels=labels, num_frames=int(data["num_frames"]),
            window_seconds=float(data["window_seconds"]), input_spec=spec_from_json(data["input_spec"]),
            split=data["split"], head=HeadConfig(**data["head"]), base=str(data.get("base", BASE)),
            training=data.get("training"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{path}: bad or missing field ({type(exc).__name__}: {exc})") from None
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise ModelError(f"{path}: labels must be at least 2 distinct names, got {list(labels)}")
    if manifest.num_frames < MIN_FRAMES or manifest.window_seconds <= 0:
        raise ModelError(f"{path}: num_frames must be >= {MIN_FRAMES} and window_seconds > 0")
    if manifest.split is not None and manifest.split not in SPLITS:
        raise ModelError(f"{path}: split must be one of {', '.join(SPLITS)} or null, got {manifest.split!r}")
    if manifest.base != BASE:
        raise ModelError(f"{path}: base {manifest.base!r} is not supported (only {BASE})")
    return manifest


def write_model(directory: Union[str, os.PathLike[str]], manifest: Manifest, model: FineTunedI3D) -> Path:
    """Write ``model.safetensors`` then ``realtime_model.json`` (last, so a partial write is not
    mistaken for a model) into ``directory`` (created if needed)."""
    from safetensors.torch import save_file

    out = Path(directory).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    save_file(model.trained_state_dict(), str(out / WEIGHTS), metadata={"format": FORMAT})
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out / MANIFEST)
    return out


def build_model(manifest: Manifest, directory: Path, cache_dir: Optional[PathLike] = None) -> FineTunedI3D:
    """The network of a fine-tuned directory with its weights (on the CPU, float32, eval mode)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    model = FineTunedI3D(len(manifest.labels), manifest.split, manifest.head)
    if manifest.split is not None:
        model.load_kinetics(read_weights(weights_path(cache_dir, download=True)))
    path = directory / WEIGHTS
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from None
    expected = set(model.trained_state_dict())
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise ModelError(f"{path} does not match {MANIFEST}: "
                         + (f"missing {missing[:3]}" if missing else "") + (" " if missing and extra else "")
                         + (f"unexpected {extra[:3]}" if extra else ""))
    try:
        model.load_state_dict(tensors, strict=False)
    except RuntimeError as exc:
        raise ModelError(f"{path} does not match {MANIFEST}: {exc}") from None
    return model.eval().requires_grad_(False)


# --------------------------------------------------------------------------- classifier


class FineTunedI3DClassifier:
    """A ``realtime finetune`` output directory behind the ClipClassifier protocol.

    The constructor reads the small manifest (labels, window, input spec) so those are
    known at once; :meth:`load` reads the weights (the frozen part from the Kinetics-400
    I3D cache, downloading it on first use) and moves them to ``device``.
    ``device``/``dtype``: as for :class:`~realtime.models.i3d.I3DClassifier`.
    """

    def __init__(self, path: Union[str, os.PathLike[str]], device: str = "auto", dtype: str = "auto",
                 cache_dir: Optional[PathLike] = None) -> None:
        self.path = Path(path).expanduser()
        self.manifest = read_manifest(self.path)
        self.name = os.fspath(path)
        self.labels: Sequence[str] = self.manifest.labels
        self.num_frames = self.manifest.num_frames
        self.window_seconds = self.manifest.window_seconds
        self.input_spec = self.manifest.input_spec
        self.device = _resolve_device(device)
        self.dtype = _resolve_dtype(dtype, self.device)
        self.cache_dir = cache_dir
        self._model: Optional[FineTunedI3D] = None

    def __repr__(self) -> str:
        return f"FineTunedI3DClassifier({self.name!r}, {len(self.labels)} labels, device={self.device!r})"

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        if self._model is not None:
            return
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError(f"{self.name}: device {self.device!r} requested but CUDA is not available")
        started = time.monotonic()
        model = build_model(self.manifest, self.path, self.cache_dir)
        self._model = model.to(device=self.device, dtype=_DTYPES[self.dtype],
                               memory_format=torch.channels_last_3d)
        logger.info("loaded fine-tuned I3D %s (%d labels, split %s) on %s (%s) in %.1f s", self.path,
                    len(self.labels), self.manifest.split, self.device, self.dtype, time.monotonic() - started)

    def predict(self, clips: np.ndarray) -> np.ndarray:
        """uint8 (B, T, H, W, 3) RGB clips, (H, W) = ``input_spec.crop`` -> float32 (B, labels) probabilities."""
        if self._model is None:
            raise RuntimeError(f"{self.name}: call load() before predict()")
        clips = validate_clips(clips, self.input_spec.crop, self.name, MIN_FRAMES)
        x = torch.from_numpy(normalize(clips, self.input_spec)).permute(0, 4, 1, 2, 3)
        x = x.to(device=self.device, dtype=_DTYPES[self.dtype]).contiguous(memory_format=torch.channels_last_3d)
        with torch.inference_mode():
            probs = torch.softmax(self._model(x).float(), dim=-1)
        return probs.cpu().numpy().astype(np.float32, copy=False)


def default_window_seconds(num_frames: int) -> float:
    """Consecutive frames at Kinetics' 25 fps, as the I3D base was trained."""
    return num_frames / KINETICS_FPS


__all__ = ["BASE", "FORMAT", "HeadConfig", "KIND", "MANIFEST", "Manifest", "MotionHead", "FineTunedI3D",
           "FineTunedI3DClassifier", "SPLITS", "WEIGHTS", "build_model", "default_window_seconds",
           "input_spec_for_size", "is_finetuned_dir", "read_manifest", "write_model"]
