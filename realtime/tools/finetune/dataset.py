"""The fine-tuning data set: one folder of clips per class, and its train/validation split.

``DATA/<class>/<clip>`` (video files, sub-folders allowed); the class names are the
folder names, sorted. Unreadable clips are skipped with a warning and counted. The
split is stratified and seeded. Nothing here decodes more than a clip's first frame.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import cv2
import numpy as np

from realtime.core.errors import ConfigError
from realtime.tools.clipfolders import VIDEO_EXTENSIONS, scan_class_folders

logger = logging.getLogger(__name__)

MIN_CLIPS_PER_CLASS = 2
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
