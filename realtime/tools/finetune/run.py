"""The entry point of ``realtime finetune``: check the base and the output folder, split, dispatch.

:func:`finetune` scans the data set, splits it, resolves the device and hands over to the
I3D (:mod:`realtime.tools.finetune.i3d`) or transformers (:mod:`realtime.tools.finetune.hf`)
backend.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from realtime.core.errors import ConfigError
from realtime.tools.finetune.dataset import PathLike, scan_dataset, stratified_split
from realtime.tools.finetune.hf import SUMMARY_FILE, _finetune_hf
from realtime.tools.finetune.i3d import _finetune_i3d
from realtime.tools.finetune.options import I3D_BASE, FineTuneOptions, FineTuneResult
from realtime.tools.finetune.training import _device

logger = logging.getLogger(__name__)


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
