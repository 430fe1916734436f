"""What ``realtime finetune`` is told (:class:`FineTuneOptions`) and what it reports back.

:class:`FineTuneResult` is the outcome of one run; its summary, with the options that
mattered, is the training record saved with the model (:func:`_training_record`).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from realtime.core.errors import ConfigError
from realtime.tools.finetune.dataset import Dataset
from realtime.tools.finetune.views import Augmentation

I3D_BASE = "i3d-kinetics400"


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
    engine: str = "auto"            # cached mode: what extracts the frozen features (ENGINES)
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


def _training_record(dataset: Dataset, opts: FineTuneOptions, result: FineTuneResult) -> dict[str, Any]:
    return {
        "data": str(dataset.root), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seed": opts.seed, "val_split": opts.val_split, "epochs": opts.epochs, "patience": opts.patience,
        "augmentation": dataclasses.asdict(opts.augmentation()), **result.summary(),
    }
