"""Fine-tune a video classifier on the user's own activities: one folder of clips per class.

``realtime finetune DATA --base M --out DIR`` (see :mod:`realtime.cli.finetune`) calls
:func:`finetune`. The pieces, in order:

Dataset (:func:`scan_dataset`, :func:`stratified_split`)
    ``DATA/<class>/<clip>`` (video files, sub-folders allowed); the class names are the
    folder names, sorted. Unreadable clips are skipped with a warning and counted. The
    train/validation split is stratified and seeded (the same data and seed give the
    same split), with at least one clip of each class on each side.

Views (:func:`read_clip`, :func:`make_view`, :class:`Augmentation`)
    A view is one model window cut from a clip: ``num_frames`` frames sampled at the
    model's frame rate (``num_frames / window_seconds``) by time, as the live
    pipeline samples them, resized and cropped with the model's
    :class:`~realtime.core.types.InputSpec`. Training views get temporal jitter (random
    window start, frame-rate jitter of +-15 %, frame order always kept), a random
    resized crop (scale and aspect jitter) and brightness/contrast jitter.
    Horizontal flip and time reversal change what a label means (``swiping left``
    becomes ``swiping right``, clockwise becomes anticlockwise), so they are off unless
    asked for. Validation views are unaugmented windows at the start, middle and end
    of the clip; a clip's prediction is the mean of its windows' probabilities, like
    ``realtime classify``.

Training, I3D base (``i3d-kinetics400``)
    ``cached`` mode (default without a GPU): the frozen part of I3D runs once per clip
    view (several augmented views per clip, made up front) and its outputs are cached
    in memory as float16: the ``Mixed_5c`` map (1024, T/8, 7, 7) and, for the default
    ``motion`` head, the motion map (480, T/8, 7, 7: the time-antisymmetric part of
    ``Mixed_3c``, see :mod:`realtime.models.finetuned`). Only the new head is trained
    on them (``split="Mixed_5c"``; with ``split="Mixed_4f"`` also ``Mixed_5b`` and
    ``Mixed_5c``, initialised from the Kinetics weights): about a second per epoch on a
    2-core CPU, so the time goes into the caching. ``full`` mode (default with a GPU,
    unless ``freeze_backbone``): every layer is trained on freshly augmented views each
    epoch. ``freeze_backbone``: only the head. The best epoch by validation accuracy is
    kept; training stops early after ``patience`` epochs without improvement. The
    output directory holds ``realtime_model.json`` and ``model.safetensors``
    (:mod:`realtime.models.finetuned`).

Training, transformers base (a local ``save_pretrained`` directory, e.g. VideoMAE)
    The classifier layer is re-initialised for the new labels, the model trained
    (only the head with ``freeze_backbone``) and saved with ``save_pretrained`` next
    to the base's image processor settings, so the output loads with the existing
    transformers backend unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from realtime.tools.clipfolders import VIDEO_EXTENSIONS, scan_class_folders
from realtime.core.errors import ConfigError, ModelError, SourceError
from realtime.core.preprocess import normalize, output_size, prepare_frame
from realtime.core.types import InputSpec

logger = logging.getLogger(__name__)

I3D_BASE = "i3d-kinetics400"
MIN_CLIPS_PER_CLASS = 2
MAX_CLIP_SECONDS = 30.0
"""Only the first this many seconds of a clip are decoded (a clip should show one activity)."""
DEFAULT_FPS = 25.0
"""Assumed when a clip does not declare its frame rate."""
SUMMARY_FILE = "realtime_finetune.json"
"""Written next to a transformers output: what was trained on what, and how well it did."""

PathLike = Union[str, os.PathLike[str]]


# --------------------------------------------------------------------------- dataset


@dataclass(frozen=True)
class ClipFile:
    path: Path
    label: int


@dataclass
class Dataset:
    """The clips of a dataset folder; ``labels[i]`` is the name of class ``i``."""

    root: Path
    labels: tuple[str, ...]
    clips: list[ClipFile]
    skipped: list[tuple[Path, str]] = field(default_factory=list)   # (file, why)

    def counts(self) -> dict[str, int]:
        """Readable clips per class."""
        out = {name: 0 for name in self.labels}
        for clip in self.clips:
            out[self.labels[clip.label]] += 1
        return out


def probe_clip(path: Path) -> Optional[str]:
    """None if OpenCV can open ``path`` and decode its first frame, else why not."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return "OpenCV cannot open it"
        ok, frame = cap.read()
        if not ok or frame is None:
            return "no frame could be decoded"
    finally:
        cap.release()
    return None


def scan_dataset(root: PathLike, probe: bool = True) -> Dataset:
    """Find the classes (sub-folders, sorted by name) and their clips (video files inside,
    sub-folders included) of ``root``.

    Raises :class:`ConfigError` for a missing folder, fewer than two class folders, or a
    class with fewer than :data:`MIN_CLIPS_PER_CLASS` readable clips. With ``probe``, each
    clip is opened and its first frame decoded; unreadable clips are skipped with a
    warning and listed in ``Dataset.skipped``.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise ConfigError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise ConfigError(f"dataset path is not a folder: {root} (expected one sub-folder of clips per class)")
    classes, loose = scan_class_folders(root)
    class_dirs = [found.folder for found in classes]
    if loose:
        logger.warning("ignoring %d clip(s) directly in %s (e.g. %s): put each class's clips in its own "
                       "sub-folder", len(loose), root, loose[0].name)
    if len(class_dirs) < 2:
        found = ", ".join(p.name for p in class_dirs) or "none"
        raise ConfigError(f"{root}: found {len(class_dirs)} class folder(s) ({found}); need at least 2, "
                          "one sub-folder of clips per class")
    labels = tuple(p.name for p in class_dirs)
    clips: list[ClipFile] = []
    skipped: list[tuple[Path, str]] = []
    for label, found in enumerate(classes):
        folder, files = found.folder, found.clips
        good = 0
        for path in files:
            why = probe_clip(path) if probe else None
            if why is not None:
                logger.warning("skipping unreadable clip %s: %s", path, why)
                skipped.append((path, why))
                continue
            clips.append(ClipFile(path, label))
            good += 1
        if good < MIN_CLIPS_PER_CLASS:
            bad = sum(1 for p, _ in skipped if folder in p.parents)
            extra = f" ({bad} unreadable)" if bad else ""
            raise ConfigError(f"class folder {folder} has {good} readable clip(s){extra}; each class needs at "
                              f"least {MIN_CLIPS_PER_CLASS} (video files: {', '.join(sorted(VIDEO_EXTENSIONS))})")
    return Dataset(root, labels, clips, skipped)


def stratified_split(labels: Sequence[int], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) positions into ``labels``, stratified by class and deterministic.

    Each class's clips are shuffled with a generator seeded by (``seed``, class), so adding
    a class does not reshuffle the others; ``round(n * val_fraction)`` of them go to
    validation, at least one and at most n - 1 when ``val_fraction`` > 0.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"--val-split must be in [0, 1), got {val_fraction}")
    train: list[int] = []
    val: list[int] = []
    for cls in sorted(set(labels)):
        members = [i for i, label in enumerate(labels) if label == cls]
        order = np.random.default_rng([seed, cls]).permutation(len(members))
        n_val = 0
        if val_fraction > 0 and len(members) >= 2:
            n_val = min(max(1, int(round(len(members) * val_fraction))), len(members) - 1)
        val.extend(members[j] for j in order[:n_val])
        train.extend(members[j] for j in order[n_val:])
    return sorted(train), sorted(val)


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


# --------------------------------------------------------------------------- options & result


@dataclass
class FineTuneOptions:
    """Everything ``realtime finetune`` can be told (the CLI flags, with their defaults)."""

    base: str = I3D_BASE
    epochs: int = 40
    patience: int = 8
    val_split: float = 0.2
    seed: int = 0
    flip: bool = False
    reverse: bool = False
    freeze_backbone: bool = False
    mode: str = "auto"              # auto | cached | full (I3D base)
    split: str = "Mixed_5c"         # last frozen I3D block in cached mode (Mixed_5c: head only)
    views: int = 4                  # training views per clip cached up front (cached mode)
    val_views: int = 3              # validation windows per clip (start, middle, end)
    batch_size: int = 8
    lr: float = 1e-3                # the new head's learning rate
    backbone_lr_scale: float = 0.1  # trained pretrained layers learn at lr * this
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    num_frames: Optional[int] = None     # I3D: 32; transformers: the checkpoint's
    window_seconds: Optional[float] = None  # I3D: num_frames / 25
    size: Optional[int] = None       # I3D crop side (224)
    head: str = "motion"            # motion | conv | linear
    hidden: int = 128
    dropout: float = 0.5
    device: str = "auto"
    workers: int = 0                # full / transformers modes: decoding worker processes
    progress: bool = True

    def augmentation(self) -> Augmentation:
        return Augmentation(flip=self.flip, reverse=self.reverse)

    def check(self) -> None:
        """ConfigError (naming the flag) for a value out of range."""
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)
        need(self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}")
        need(self.patience >= 1, f"--patience must be >= 1, got {self.patience}")
        need(0.0 <= self.val_split < 1.0, f"--val-split must be in [0, 1), got {self.val_split}")
        need(self.mode in ("auto", "cached", "full"), f"--mode must be auto, cached or full, got {self.mode!r}")
        need(self.views >= 1, f"--views must be >= 1, got {self.views}")
        need(self.val_views >= 1, f"--val-views must be >= 1, got {self.val_views}")
        need(self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}")
        need(self.lr > 0, f"--lr must be > 0, got {self.lr}")
        need(self.num_frames is None or self.num_frames >= 8, f"--num-frames must be >= 8, got {self.num_frames}")
        need(self.window_seconds is None or self.window_seconds > 0,
             f"--window-seconds must be > 0, got {self.window_seconds}")
        need(self.size is None or 32 <= self.size <= 512, f"--size must be in [32, 512], got {self.size}")
        need(self.head in ("motion", "conv", "linear"), f"--head must be motion, conv or linear, got {self.head!r}")
        need(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
             f"--device must be auto, cpu or cuda[:N], got {self.device!r}")


@dataclass
class EvalResult:
    loss: float
    window_accuracy: float
    clip_accuracy: float
    confusion: list[list[int]]          # [true][predicted], clip level

    def key(self) -> tuple[float, float]:
        """Larger is better: clip accuracy, then window accuracy."""
        return (self.clip_accuracy, self.window_accuracy)


@dataclass
class FineTuneResult:
    out_dir: Path
    base: str
    mode: str                           # cached | full | transformers
    labels: tuple[str, ...]
    train_clips: int
    val_clips: int
    skipped: list[tuple[Path, str]]
    best_epoch: int
    epochs_run: int
    val: Optional[EvalResult]
    history: list[dict[str, float]]
    seconds_features: float
    seconds_training: float
    seconds_total: float
    trained: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "base": self.base, "mode": self.mode, "labels": list(self.labels),
            "train_clips": self.train_clips, "val_clips": self.val_clips,
            "skipped": [[str(p), why] for p, why in self.skipped],
            "best_epoch": self.best_epoch, "epochs_run": self.epochs_run,
            "val_accuracy": None if self.val is None else round(self.val.clip_accuracy, 4),
            "val_window_accuracy": None if self.val is None else round(self.val.window_accuracy, 4),
            "val_loss": None if self.val is None else round(self.val.loss, 4),
            "val_confusion": None if self.val is None else self.val.confusion,
            "trained": self.trained, "history": self.history,
            "seconds_features": round(self.seconds_features, 1),
            "seconds_training": round(self.seconds_training, 1),
            "seconds_total": round(self.seconds_total, 1),
        }


# --------------------------------------------------------------------------- training loop


@dataclass
class _Learner:
    """What the shared loop needs from a backend."""

    modules: list[nn.Module]                                  # set to train()/eval()
    param_groups: list[dict[str, Any]]                        # for the optimiser
    train_batches: Callable[[int], Iterable[tuple[Any, torch.Tensor]]]   # epoch -> (x, y)
    steps_per_epoch: int
    forward: Callable[[Any], torch.Tensor]                    # x -> logits
    val_batches: Optional[Callable[[], Iterable[tuple[Any, torch.Tensor, torch.Tensor]]]]  # (x, y, clip)
    state: Callable[[], dict[str, torch.Tensor]]
    restore: Callable[[dict[str, torch.Tensor]], None]
    frozen_eval: list[nn.Module] = field(default_factory=list)  # kept in eval() while training
    penalty: Optional[Callable[[], torch.Tensor]] = None       # added to the loss (e.g. an L2 term)


def _evaluate(learner: _Learner, num_classes: int) -> Optional[EvalResult]:
    if learner.val_batches is None:
        return None
    for m in learner.modules:
        m.eval()
    losses, correct, count = 0.0, 0, 0
    clip_probs: dict[int, torch.Tensor] = {}
    clip_label: dict[int, int] = {}
    with torch.no_grad():
        for x, y, clip in learner.val_batches():
            logits = learner.forward(x).float().cpu()
            losses += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            count += len(y)
            probs = logits.softmax(1)
            for p, label, c in zip(probs, y.tolist(), clip.tolist()):
                clip_probs[c] = clip_probs.get(c, torch.zeros_like(p)) + p
                clip_label[c] = label
    if count == 0:
        return None
    confusion = [[0] * num_classes for _ in range(num_classes)]
    for c, p in clip_probs.items():
        confusion[clip_label[c]][int(p.argmax())] += 1
    clip_correct = sum(confusion[i][i] for i in range(num_classes))
    return EvalResult(losses / count, correct / count, clip_correct / max(1, len(clip_probs)), confusion)


def _fit(learner: _Learner, opts: FineTuneOptions, num_classes: int,
         device: torch.device) -> tuple[int, int, Optional[EvalResult], list[dict[str, float]]]:
    """Train with AdamW (warm-up then cosine decay), keep the best epoch by validation
    accuracy (clips, then windows; a tie goes to the later, longer-trained epoch: with a
    handful of validation clips the accuracy saturates early, and the validation loss is
    too noisy to pick an epoch), stop after ``opts.patience`` epochs below the best (Ctrl-C
    stops too, keeping the best so far). Returns (best_epoch, epochs_run, best_eval, history)."""
    optimizer = torch.optim.AdamW(learner.param_groups, weight_decay=opts.weight_decay)
    total = max(1, opts.epochs * learner.steps_per_epoch)
    warmup = min(learner.steps_per_epoch, total // 10 + 1)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    history: list[dict[str, float]] = []
    best_key: Optional[tuple[float, ...]] = None
    best_eval: Optional[EvalResult] = None
    best_state: Optional[dict[str, torch.Tensor]] = None
    best_epoch, stale, epoch = 0, 0, 0
    bar = tqdm(total=opts.epochs, desc="training", unit="epoch", file=sys.stderr, disable=not opts.progress,
               dynamic_ncols=True)
    try:
        for epoch in range(1, opts.epochs + 1):
            for m in learner.modules:
                m.train()
            for m in learner.frozen_eval:
                m.eval()
            loss_sum, correct, seen = 0.0, 0, 0
            steps = tqdm(learner.train_batches(epoch), total=learner.steps_per_epoch, desc=f"epoch {epoch}",
                         unit="batch", file=sys.stderr, leave=False, disable=not opts.progress,
                         dynamic_ncols=True)
            for x, y in steps:
                y = y.to(device)
                logits = learner.forward(x).float()
                loss = F.cross_entropy(logits, y, label_smoothing=opts.label_smoothing)
                total_loss = loss if learner.penalty is None else loss + learner.penalty()
                optimizer.zero_grad(set_to_none=True)
                total_loss.backward()
                optimizer.step()
                scheduler.step()
                loss_sum += loss.item() * len(y)
                correct += int((logits.argmax(1) == y).sum())
                seen += len(y)
                steps.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.2f}")
            row = {"epoch": epoch, "loss": round(loss_sum / max(1, seen), 4),
                   "accuracy": round(correct / max(1, seen), 4)}
            ev = _evaluate(learner, num_classes)
            if ev is not None:
                row.update(val_loss=round(ev.loss, 4), val_accuracy=round(ev.clip_accuracy, 4),
                           val_window_accuracy=round(ev.window_accuracy, 4))
            history.append(row)
            key = ev.key() if ev is not None else (float(epoch),)   # no validation: the last epoch
            if best_key is None or key >= best_key:
                best_key, best_eval, best_epoch, stale = key, ev, epoch, 0
                best_state = {k: v.detach().clone() for k, v in learner.state().items()}
            else:
                stale += 1
            logger.info("epoch %d: loss %.3f, accuracy %.3f%s", epoch, row["loss"], row["accuracy"],
                        "" if ev is None else f"; validation loss {ev.loss:.3f}, accuracy {ev.clip_accuracy:.3f} "
                        f"(windows {ev.window_accuracy:.3f})" + (" *" if best_epoch == epoch else ""))
            bar.set_postfix(loss=row["loss"], acc=row["accuracy"],
                            **({} if ev is None else {"val_acc": f"{ev.clip_accuracy:.3f}",
                                                      "best": f"{best_key[0]:.3f}@{best_epoch}"}))
            bar.update(1)
            if ev is not None and stale >= opts.patience:
                logger.info("%d epochs below the best: stopping early (best: epoch %d)", stale, best_epoch)
                break
    except KeyboardInterrupt:
        if best_state is None:
            raise
        logger.warning("interrupted: keeping the best epoch so far (%d)", best_epoch)
    finally:
        bar.close()
    if best_state is not None:
        learner.restore(best_state)
    for m in learner.modules:
        m.eval()
    return best_epoch, epoch, best_eval, history


def _batches(n: int, batch_size: int, generator: torch.Generator, shuffle: bool = True) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


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


# --------------------------------------------------------------------------- device


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available here")
    return torch.device(name)


# --------------------------------------------------------------------------- I3D


@dataclass
class FeatureSet:
    """Cached outputs of the frozen part: one row per view."""

    features: torch.Tensor              # (N, C, T, H, W) float16, CPU: input of the trained part
    motion: Optional[torch.Tensor]      # (N, 480, T', H', W') float16 motion maps, or None
    labels: torch.Tensor                # (N,) int64
    clips: torch.Tensor                 # (N,) int64: position of the view's clip in the split

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, idx: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Rows ``idx`` as float32 on ``device``: (features, motion or None)."""
        motion = None if self.motion is None else self.motion[idx].to(device, torch.float32)
        return self.features[idx].to(device, torch.float32), motion


def cache_features(model: Any, clips: Sequence[ClipFile], spec: InputSpec, num_frames: int, fps: float,
                   *, views: int, train: bool, aug: Augmentation, seed: int, device: torch.device,
                   skipped: list[tuple[Path, str]], progress: bool = True, desc: str = "caching features",
                   chunk: int = 4) -> FeatureSet:
    """Run ``model.features`` once per view of each clip and keep the outputs (float16, CPU):
    the input of the trained part and, for the motion head, the motion map.

    Training clips get ``views`` views: the first unaugmented (the middle window, centre
    crop), the others augmented with ``aug``, drawn from a generator seeded by (``seed``,
    clip, view). Validation clips get ``views`` unaugmented windows (:func:`eval_positions`).
    A clip that fails to decode is skipped with a warning and added to ``skipped``.
    """
    feats: list[torch.Tensor] = []
    motions: list[torch.Tensor] = []
    labels: list[int] = []
    owners: list[int] = []
    bar = tqdm(clips, desc=desc, unit="clip", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    for c, clip in enumerate(bar):
        try:
            decoded = read_clip(clip.path, spec)
        except SourceError as exc:
            logger.warning("skipping unreadable clip %s", exc)
            skipped.append((clip.path, str(exc)))
            continue
        if train:
            batch = [make_view(decoded, num_frames, fps, spec.crop)]
            batch += [make_view(decoded, num_frames, fps, spec.crop, np.random.default_rng([seed, c, v]), aug)
                      for v in range(1, views)]
        else:
            batch = [make_view(decoded, num_frames, fps, spec.crop, position=p) for p in eval_positions(views)]
        del decoded
        for i in range(0, len(batch), chunk):
            x = _to_input(np.stack(batch[i:i + chunk]), spec, device, "i3d")
            with torch.inference_mode():
                out, motion = model.features(x)
            feats.append(out.to("cpu", torch.float16).contiguous())
            if motion is not None:
                motions.append(motion.to("cpu", torch.float16).contiguous())
        labels += [clip.label] * len(batch)
        owners += [c] * len(batch)
    if not feats:
        raise SourceError(f"no clip could be decoded ({desc})")
    return FeatureSet(torch.cat(feats), torch.cat(motions) if motions else None, torch.tensor(labels),
                      torch.tensor(owners))


def _i3d_settings(opts: FineTuneOptions) -> tuple[int, float, InputSpec]:
    from realtime.models.finetuned import default_window_seconds, input_spec_for_size
    from realtime.models.i3d import DEFAULT_NUM_FRAMES

    num_frames = opts.num_frames or DEFAULT_NUM_FRAMES
    window = opts.window_seconds or default_window_seconds(num_frames)
    return num_frames, window, input_spec_for_size(opts.size or 224)


def _resolve_mode(opts: FineTuneOptions, device: torch.device) -> tuple[str, Optional[str]]:
    """(mode, split) for the I3D base, logging the choice."""
    from realtime.models.finetuned import SPLITS

    if opts.split not in SPLITS:
        raise ConfigError(f"--split must be one of {', '.join(SPLITS)}, got {opts.split!r}")
    if opts.freeze_backbone:
        if opts.mode == "full":
            raise ConfigError("--freeze-backbone and --mode full contradict each other")
        logger.info("--freeze-backbone: I3D stays frozen; only a new head is trained, on cached features")
        return "cached", "Mixed_5c"
    mode = opts.mode
    if mode == "auto":
        mode = "full" if device.type == "cuda" else "cached"
        if mode == "cached":
            trained = ("only a new head is trained" if opts.split == "Mixed_5c" else
                       f"only the I3D blocks after {opts.split} and a new head are trained")
            logger.info("no GPU: cached mode - I3D up to %s stays frozen and runs once per clip view, its "
                        "features are cached, and %s (training every layer needs a GPU, or --mode full)",
                        opts.split, trained)
    if mode == "full":
        if device.type != "cuda":
            logger.warning("--mode full on the CPU trains every I3D layer on every view: expect hours, not "
                           "minutes (the default cached mode is made for CPUs)")
        logger.info("full fine-tuning: every I3D layer is trained, on freshly augmented views each epoch")
        return "full", None
    return "cached", opts.split


NORMALIZATION_VIEWS = 256
"""Training views whose features set the head's input standardisation (all of them when cached)."""


@torch.no_grad()
def _fit_normalization(model: Any, batches: Iterable[tuple[torch.Tensor, Optional[torch.Tensor]]]) -> None:
    """Set ``model.head``'s input standardisation from the pooled features of ``batches``
    (outputs of ``model.features``), run through the (still untrained) top part."""
    was_training = model.training
    model.eval()
    pooled: list[torch.Tensor] = []
    motions: list[torch.Tensor] = []
    for stem, motion in batches:
        c5, m = model.head_inputs(stem, motion)
        pooled.append(c5.float().mean(dim=(2, 3, 4)).cpu())
        if m is not None:
            motions.append(m.float().mean(dim=(2, 3, 4)).cpu())
    if pooled:
        model.head.set_normalization(torch.cat(pooled), torch.cat(motions) if motions else None)
    model.train(was_training)


def _finetune_i3d(dataset: Dataset, train_idx: list[int], val_idx: list[int], out: Path,
                  opts: FineTuneOptions, device: torch.device) -> FineTuneResult:
    from realtime.models.finetuned import FineTunedI3D, HeadConfig, Manifest, write_model
    from realtime.models.i3d_weights import read_weights, weights_path

    started = time.monotonic()
    num_frames, window, spec = _i3d_settings(opts)
    fps = num_frames / window
    mode, split = _resolve_mode(opts, device)
    torch.manual_seed(opts.seed)
    head = HeadConfig(kind=opts.head, hidden=opts.hidden, dropout=opts.dropout)
    model = FineTunedI3D(len(dataset.labels), split, head)
    try:
        model.load_kinetics(read_weights(weights_path(download=True)))
    except ModelError as exc:
        raise ModelError(f"cannot load the I3D base weights: {exc}") from None
    model = model.to(device)
    model.lower.requires_grad_(False)
    train_clips = [dataset.clips[i] for i in train_idx]
    val_clips = [dataset.clips[i] for i in val_idx]
    aug = opts.augmentation()
    skipped: list[tuple[Path, str]] = []
    gen = torch.Generator().manual_seed(opts.seed)
    backbone_params = [p for p in model.top.parameters()] + [p for p in model.lower.parameters()
                                                             if mode == "full"]
    groups = [{"params": list(model.head.parameters()), "lr": opts.lr}]
    if backbone_params:
        groups.append({"params": backbone_params, "lr": opts.lr * opts.backbone_lr_scale})
    if mode == "full":
        model.lower.requires_grad_(True)
    features_started = time.monotonic()

    if mode == "cached":
        model.eval()
        train_set = cache_features(model, train_clips, spec, num_frames, fps, views=opts.views, train=True,
                                   aug=aug, seed=opts.seed, device=device, skipped=skipped,
                                   progress=opts.progress, desc="caching training features")
        val_set = (cache_features(model, val_clips, spec, num_frames, fps, views=opts.val_views, train=False,
                                  aug=aug, seed=opts.seed, device=device, skipped=skipped,
                                  progress=opts.progress, desc="caching validation features")
                   if val_clips else None)
        seconds_features = time.monotonic() - features_started
        logger.info("cached %d training and %d validation views (%s each) in %.0f s", len(train_set),
                    0 if val_set is None else len(val_set), tuple(train_set.features.shape[1:]), seconds_features)

        def train_batches(epoch: int) -> Iterator[tuple[Any, torch.Tensor]]:
            for idx in _batches(len(train_set), opts.batch_size, gen):
                yield train_set.batch(idx, device), train_set.labels[idx]

        def val_batches() -> Iterator[tuple[Any, torch.Tensor, torch.Tensor]]:
            assert val_set is not None
            for idx in _batches(len(val_set), max(16, opts.batch_size), gen, shuffle=False):
                yield val_set.batch(idx, device), val_set.labels[idx], val_set.clips[idx]

        def forward_cached(x: tuple[torch.Tensor, Optional[torch.Tensor]]) -> torch.Tensor:
            return model.forward_features(*x)

        _fit_normalization(model, (train_set.batch(idx, device) for idx in
                                   _batches(len(train_set), 32, gen, shuffle=False)))

        learner = _Learner(
            modules=[model.top, model.head], param_groups=groups, train_batches=train_batches,
            steps_per_epoch=math.ceil(len(train_set) / opts.batch_size), forward=forward_cached,
            val_batches=val_batches if val_set is not None else None,
            state=lambda: {k: v for k, v in model.state_dict().items() if k.startswith(("top.", "head."))},
            restore=lambda s: model.load_state_dict(s, strict=False), penalty=model.head.penalty)
    else:
        seconds_features = 0.0
        train_ds = _ViewDataset(train_clips, spec, num_frames, fps, aug, opts.seed)
        val_ds = _ViewDataset(val_clips, spec, num_frames, fps, None, opts.seed, opts.val_views)
        use_amp = device.type == "cuda"
        amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16

        def forward(x: torch.Tensor) -> torch.Tensor:
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                return model(x)

        def train_batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            train_ds.epoch = epoch
            for views, labels, _ in _loader(train_ds, opts.batch_size, True, opts.workers, opts.seed + epoch):
                yield _to_input(views, spec, device, "i3d"), labels

        def val_batches() -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
            for views, labels, clips in _loader(val_ds, opts.batch_size, False, opts.workers, opts.seed):
                yield _to_input(views, spec, device, "i3d"), labels, clips

        def first_views() -> Iterator[tuple[torch.Tensor, Optional[torch.Tensor]]]:
            train_ds.epoch = 0
            for i, (views, _, _) in enumerate(_loader(train_ds, opts.batch_size, True, opts.workers, opts.seed)):
                if i * opts.batch_size >= NORMALIZATION_VIEWS:
                    break
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    yield model.features(_to_input(views, spec, device, "i3d"))

        _fit_normalization(model, first_views())
        learner = _Learner(
            modules=[model], param_groups=groups, train_batches=train_batches,
            steps_per_epoch=math.ceil(len(train_ds) / opts.batch_size), forward=forward,
            val_batches=val_batches if val_clips else None,
            state=lambda: dict(model.state_dict()), restore=lambda s: model.load_state_dict(s),
            penalty=model.head.penalty)

    training_started = time.monotonic()
    best_epoch, epochs_run, best_eval, history = _fit(learner, opts, len(dataset.labels), device)
    seconds_training = time.monotonic() - training_started
    model = model.to("cpu", torch.float32).eval()
    result = FineTuneResult(
        out_dir=out, base=I3D_BASE, mode=mode, labels=dataset.labels, train_clips=len(train_clips),
        val_clips=len(val_clips), skipped=dataset.skipped + skipped, best_epoch=best_epoch,
        epochs_run=epochs_run, val=best_eval, history=history, seconds_features=seconds_features,
        seconds_training=seconds_training, seconds_total=time.monotonic() - started,
        trained=model.trained_layers + ["head"])
    training = {**_training_record(dataset, opts, result), "split": split,
                "head": dataclasses.asdict(head)}
    manifest = Manifest(labels=dataset.labels, num_frames=num_frames, window_seconds=window, input_spec=spec,
                        split=split, head=head, training=training)
    write_model(out, manifest, model)
    return result


def _training_record(dataset: Dataset, opts: FineTuneOptions, result: FineTuneResult) -> dict[str, Any]:
    return {
        "data": str(dataset.root), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seed": opts.seed, "val_split": opts.val_split, "epochs": opts.epochs, "patience": opts.patience,
        "augmentation": dataclasses.asdict(opts.augmentation()), **result.summary(),
    }


# --------------------------------------------------------------------------- transformers


def _finetune_hf(dataset: Dataset, train_idx: list[int], val_idx: list[int], out: Path,
                 opts: FineTuneOptions, device: torch.device) -> FineTuneResult:
    from transformers import AutoConfig, AutoModelForVideoClassification
    from transformers.models.auto.modeling_auto import MODEL_FOR_VIDEO_CLASSIFICATION_MAPPING_NAMES

    from realtime.models.hf import (
        _square_image_size,
        default_processor_settings,
        input_spec_from_processor,
        window_seconds_for,
    )

    started = time.monotonic()
    base = Path(opts.base).expanduser()
    try:
        config = AutoConfig.from_pretrained(str(base), local_files_only=True)
    except Exception as exc:
        raise ModelError(f"cannot read the transformers config in {base}: {exc}") from None
    model_type = str(getattr(config, "model_type", ""))
    if model_type not in MODEL_FOR_VIDEO_CLASSIFICATION_MAPPING_NAMES:
        raise ConfigError(f"--base {base} is a {model_type or 'unknown'} model, not a video classifier")
    num_frames = int(getattr(config, "num_frames", 0) or 0)
    if num_frames <= 0:
        raise ModelError(f"{base}/config.json has no num_frames")
    if opts.num_frames is not None and opts.num_frames != num_frames:
        raise ConfigError(f"--num-frames {opts.num_frames}: {base} was built for {num_frames} frames")
    settings_files = [base / n for n in ("preprocessor_config.json", "video_preprocessor_config.json")]
    settings_file = next((p for p in settings_files if p.is_file()), None)
    if settings_file is not None:
        settings = json.loads(settings_file.read_text(encoding="utf-8"))
    else:
        settings = default_processor_settings(model_type, _square_image_size(config))
    spec = input_spec_from_processor(settings, model_type, _square_image_size(config))
    window = opts.window_seconds or window_seconds_for(config, num_frames)
    fps = num_frames / window
    labels = list(dataset.labels)
    torch.manual_seed(opts.seed)
    try:
        model = AutoModelForVideoClassification.from_pretrained(
            str(base), num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)}, ignore_mismatched_sizes=True,
            local_files_only=True)
    except Exception as exc:
        raise ModelError(f"cannot load the transformers model in {base}: {exc}") from None
    classifier = getattr(model, "classifier", None)
    if isinstance(classifier, nn.Linear):        # a fresh head even when the label count matches
        nn.init.trunc_normal_(classifier.weight, std=0.02)
        nn.init.zeros_(classifier.bias)
    model = model.to(device).float()
    backbone = model.base_model
    head_params = [p for n, p in model.named_parameters() if not n.startswith(model.base_model_prefix + ".")]
    if opts.freeze_backbone:
        backbone.requires_grad_(False)
        groups = [{"params": head_params, "lr": opts.lr}]
        logger.info("--freeze-backbone: training only the classifier of %s", base)
    else:
        groups = [{"params": head_params, "lr": opts.lr},
                  {"params": list(backbone.parameters()), "lr": opts.lr * opts.backbone_lr_scale}]
        if device.type != "cuda":
            logger.warning("training every layer of %s on the CPU is slow; --freeze-backbone trains only the head",
                           base)
    train_clips = [dataset.clips[i] for i in train_idx]
    val_clips = [dataset.clips[i] for i in val_idx]
    train_ds = _ViewDataset(train_clips, spec, num_frames, fps, opts.augmentation(), opts.seed)
    val_ds = _ViewDataset(val_clips, spec, num_frames, fps, None, opts.seed, opts.val_views)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return model(pixel_values=x).logits

    def train_batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        train_ds.epoch = epoch
        for views, y, _ in _loader(train_ds, opts.batch_size, True, opts.workers, opts.seed + epoch):
            yield _to_input(views, spec, device, "hf"), y

    def val_batches() -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        for views, y, clips in _loader(val_ds, opts.batch_size, False, opts.workers, opts.seed):
            yield _to_input(views, spec, device, "hf"), y, clips

    learner = _Learner(
        modules=[model], param_groups=groups, train_batches=train_batches,
        steps_per_epoch=math.ceil(len(train_ds) / opts.batch_size), forward=forward,
        val_batches=val_batches if val_clips else None,
        state=lambda: dict(model.state_dict()), restore=lambda s: model.load_state_dict(s),
        frozen_eval=[backbone] if opts.freeze_backbone else [])
    training_started = time.monotonic()
    best_epoch, epochs_run, best_eval, history = _fit(learner, opts, len(labels), device)
    seconds_training = time.monotonic() - training_started
    model = model.to("cpu").eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    if settings_file is not None:
        shutil.copyfile(settings_file, out / settings_file.name)
    else:
        (out / "preprocessor_config.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    result = FineTuneResult(
        out_dir=out, base=str(base), mode="transformers", labels=dataset.labels, train_clips=len(train_clips),
        val_clips=len(val_clips), skipped=list(dataset.skipped), best_epoch=best_epoch, epochs_run=epochs_run,
        val=best_eval, history=history, seconds_features=0.0, seconds_training=seconds_training,
        seconds_total=time.monotonic() - started,
        trained=["classifier"] if opts.freeze_backbone else ["all layers"])
    (out / SUMMARY_FILE).write_text(json.dumps(_training_record(dataset, opts, result), indent=2) + "\n",
                                    encoding="utf-8")
    return result


# --------------------------------------------------------------------------- entry point


def _check_out_dir(out: Path, data: Path) -> None:
    """The output may be new, empty, or a previous output (overwritten); anything else is refused."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        previous = any((out / n).is_file() for n in ("realtime_model.json", SUMMARY_FILE))
        if not previous:
            raise ConfigError(f"--out {out} is not empty and holds no previous fine-tuned model; "
                              "choose a new folder")
    resolved = out.resolve()
    if resolved == data.resolve() or data.resolve() in resolved.parents:
        raise ConfigError(f"--out {out} is inside the dataset folder {data}; it would become a class")


def _base_kind(base: str) -> str:
    if base == I3D_BASE:
        return "i3d"
    path = Path(base).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return "transformers"
    if path.is_dir():
        raise ConfigError(f"--base {base}: the folder has no config.json (expected a transformers "
                          "save_pretrained() video classifier)")
    raise ConfigError(f"--base {base}: expected {I3D_BASE} or a local transformers video-classifier folder")


def finetune(data: PathLike, out: PathLike, options: Optional[FineTuneOptions] = None) -> FineTuneResult:
    """Fine-tune ``options.base`` on the clips in ``data`` (one sub-folder per class) and save to ``out``."""
    opts = options or FineTuneOptions()
    opts.check()
    kind = _base_kind(opts.base)
    data_path = Path(data).expanduser()
    out_path = Path(out).expanduser()
    dataset = scan_dataset(data_path)
    _check_out_dir(out_path, data_path)
    train_idx, val_idx = stratified_split([c.label for c in dataset.clips], opts.val_split, opts.seed)
    counts = dataset.counts()
    logger.info("%d classes, %d clips (%s): %d for training, %d for validation%s", len(dataset.labels),
                len(dataset.clips), ", ".join(f"{k} {v}" for k, v in counts.items()), len(train_idx), len(val_idx),
                f"; {len(dataset.skipped)} unreadable clip(s) skipped" if dataset.skipped else "")
    device = _device(opts.device)
    if kind == "i3d":
        return _finetune_i3d(dataset, train_idx, val_idx, out_path, opts, device)
    return _finetune_hf(dataset, train_idx, val_idx, out_path, opts, device)


__all__ = ["Augmentation", "ClipFile", "Dataset", "DecodedClip", "EvalResult", "FeatureSet", "FineTuneOptions",
           "FineTuneResult", "I3D_BASE", "cache_features", "crop_box", "eval_positions", "finetune", "make_view",
           "probe_clip", "read_clip", "scan_dataset", "stratified_split", "window_indices"]
