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

The network itself (:class:`~realtime.models.finetuned_network.FineTunedI3D`, its
head, and why the default head looks the way it does) is in
:mod:`realtime.models.finetuned_network`; this module holds the files and the
ClipClassifier, and re-exports the network's names that the manifest and callers use.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from realtime.core.errors import ModelError
from realtime.core.preprocess import INTERPOLATIONS, normalize
from realtime.core.types import InputSpec
from realtime.models.finetuned_network import MIN_FRAMES, SPLITS, FineTunedI3D, HeadConfig, MotionHead
from realtime.models.i3d import (
    _DTYPES,
    INPUT_SPEC,
    KINETICS_FPS,
    _resolve_device,
    _resolve_dtype,
    validate_clips,
)
from realtime.models.i3d_weights import PathLike, read_weights, weights_path

logger = logging.getLogger(__name__)

MANIFEST = "realtime_model.json"
WEIGHTS = "model.safetensors"
FORMAT = "realtime/finetuned-i3d/1"
KIND = "i3d-finetuned"
BASE = "i3d-kinetics400"


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
