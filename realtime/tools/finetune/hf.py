"""Fine-tuning a transformers video classifier (a local ``save_pretrained`` folder, e.g. VideoMAE).

The classifier layer is re-initialised for the new labels and the output saved with
``save_pretrained``, so it loads with the existing transformers backend unchanged.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from realtime.core.errors import ConfigError, ModelError
from realtime.tools.finetune.dataset import Dataset
from realtime.tools.finetune.options import FineTuneOptions, FineTuneResult, _training_record
from realtime.tools.finetune.training import _fit, _Learner
from realtime.tools.finetune.views import _loader, _to_input, _ViewDataset

logger = logging.getLogger(__name__)

SUMMARY_FILE = "realtime_finetune.json"
"""Written next to a transformers output: what was trained on what, and how well it did."""


# --------------------------------------------------------------------------- transformers


def _finetune_hf(dataset: Dataset, train_idx: list[int], val_idx: list[int], out: Path,
                 opts: FineTuneOptions, device: torch.device) -> FineTuneResult:
    from transformers import AutoConfig, AutoModelForVideoClassification
    from transformers.models.auto.modeling_auto import MODEL_FOR_VIDEO_CLASSIFICATION_MAPPING_NAMES

    from realtime.models.hf_inputs import (
        square_image_size,
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
        settings = default_processor_settings(model_type, square_image_size(config))
    spec = input_spec_from_processor(settings, model_type, square_image_size(config))
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
