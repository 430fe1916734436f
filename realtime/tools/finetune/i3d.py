"""Fine-tuning the Kinetics I3D: cached features (CPU) or every layer (GPU), saved as a manifest
and safetensors (:mod:`realtime.models.finetuned`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from realtime.core.errors import ConfigError, ModelError, SourceError
from realtime.core.types import InputSpec
from realtime.tools.finetune.dataset import ClipFile, Dataset
from realtime.tools.finetune.options import (
    I3D_BASE,
    FineTuneOptions,
    FineTuneResult,
    _training_record,
)
from realtime.tools.finetune.training import _batches, _fit, _Learner
from realtime.tools.finetune.views import (
    Augmentation,
    _loader,
    _to_input,
    _ViewDataset,
    eval_positions,
    make_view,
    read_clip,
)

logger = logging.getLogger(__name__)


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


Extract = Callable[[torch.Tensor], tuple[torch.Tensor, Optional[torch.Tensor]]]
"""``model.features`` as some engine runs it: (B, 3, T, H, W) input -> (features, motion map or None)."""


def feature_extractor(model: Any, num_frames: int, crop: tuple[int, int], device: torch.device,
                      engine: str = "auto") -> tuple[Extract, str]:
    """How ``model.features`` (the frozen part) runs for caching, and on which engine: OpenVINO
    on a CPU where ``engine`` resolves to it (converted once, cached like any model), else torch."""
    from realtime.accel.openvino_model import openvino_dtype, resolve_engine, try_openvino

    def on_torch(x: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        with torch.inference_mode():
            return model.features(x)

    if resolve_engine(engine, device) != "openvino":
        return on_torch, "torch"
    with torch.inference_mode():     # whether the frozen part yields a motion map is fixed by the head
        has_motion = model.features(torch.zeros(2, 3, num_frames, *crop))[1] is not None

    def frozen(x: torch.Tensor) -> Any:
        out, motion = model.features(x)
        return (out, motion) if has_motion else out

    # Keyed by the frozen weights only (the head is new each run) and what is computed from them.
    runner = try_openvino(model.lower, frozen, (3, num_frames, *crop), name=f"i3d-kinetics400 up to {model.split}",
                          dtype=openvino_dtype("auto"), variant=f"features, motion={has_motion}")
    if runner is None:
        return on_torch, "torch"

    def on_openvino(x: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        outs = runner.outputs(x)
        return outs[0], (outs[1] if has_motion else None)
    return on_openvino, "openvino"


def cache_features(extract: Extract, clips: Sequence[ClipFile], spec: InputSpec, num_frames: int, fps: float,
                   *, views: int, train: bool, aug: Augmentation, seed: int, device: torch.device,
                   skipped: list[tuple[Path, str]], progress: bool = True, desc: str = "caching features",
                   chunk: int = 4) -> FeatureSet:
    """Run ``extract`` (``model.features``) once per view of each clip and keep the outputs (float16, CPU):
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
            out, motion = extract(x)
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
    from realtime.models.finetuned_network import SPLITS

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
    from realtime.models.finetuned import Manifest, write_model
    from realtime.models.finetuned_network import FineTunedI3D, HeadConfig
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
        extract, engine = feature_extractor(model, num_frames, spec.crop, device, opts.engine)
        logger.info("caching features on %s", engine)
        train_set = cache_features(extract, train_clips, spec, num_frames, fps, views=opts.views, train=True,
                                   aug=aug, seed=opts.seed, device=device, skipped=skipped,
                                   progress=opts.progress, desc="caching training features")
        val_set = (cache_features(extract, val_clips, spec, num_frames, fps, views=opts.val_views, train=False,
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
