"""Small randomly initialised ``transformers`` video models, built locally (never from the hub).

``make_tiny_videomae`` / ``make_tiny_timesformer`` save a complete checkpoint directory
(config with readable ``id2label``, safetensors weights, ``preprocessor_config.json``) that
``HFVideoClassifier`` loads offline. ``videomae_config`` / ``make_videomae`` build the
real-sized architectures ("small", "base") in memory, for speed measurements only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from transformers import (
    TimesformerConfig,
    TimesformerForVideoClassification,
    VideoMAEConfig,
    VideoMAEForVideoClassification,
    VideoMAEImageProcessorPil,
)
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

SEED = 0

DEFAULT_LABELS: tuple[str, ...] = (
    "abseiling", "arm wrestling", "flipping pancake", "shooting basketball", "juggling balls",
    "playing violin", "riding a bike", "surfing water",
)

VIDEOMAE_SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
    "small": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}
"""Encoder sizes: the tiny test model, and VideoMAE-S / VideoMAE-B as published."""


def label_names(num_labels: int, labels: Optional[Sequence[str]] = None) -> list[str]:
    """``labels`` (checked: right count, distinct) or ``num_labels`` distinct readable names."""
    if labels is None:
        labels = [DEFAULT_LABELS[i] if i < len(DEFAULT_LABELS) else f"activity {i}" for i in range(num_labels)]
    labels = [str(label) for label in labels]
    if len(labels) != num_labels or len(set(labels)) != num_labels:
        raise ValueError(f"need {num_labels} distinct labels, got {labels}")
    return labels


def _label_maps(names: Sequence[str]) -> dict[str, Any]:
    return dict(
        num_labels=len(names),
        id2label={i: name for i, name in enumerate(names)},
        label2id={name: i for i, name in enumerate(names)},
    )


def videomae_config(
    size: str = "base", num_labels: int = 400, image_size: int = 224, num_frames: int = 16,
    labels: Optional[Sequence[str]] = None,
) -> VideoMAEConfig:
    """VideoMAE classification config: patch 16, tubelet 2, mean-pooled head, encoder ``size``."""
    return VideoMAEConfig(
        image_size=image_size, patch_size=16, tubelet_size=2, num_frames=num_frames, num_channels=3,
        use_mean_pooling=True, **VIDEOMAE_SIZES[size], **_label_maps(label_names(num_labels, labels)),
    )


def make_videomae(config: VideoMAEConfig, seed: int = SEED) -> VideoMAEForVideoClassification:
    """A randomly initialised model for ``config`` (deterministic for ``seed``), in eval mode, not saved."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return VideoMAEForVideoClassification(config).eval()


def _save_processor(path: Path, image_size: int, mean: Sequence[float], std: Sequence[float]) -> None:
    processor = VideoMAEImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=list(mean),
        image_std=list(std),
    )
    processor.save_pretrained(path)  # preprocessor_config.json, "image_processor_type": "VideoMAEImageProcessor"


def make_tiny_videomae(
    path: str | Path, num_labels: int = 5, labels: Optional[Sequence[str]] = None,
    image_size: int = 32, num_frames: int = 16,
) -> Path:
    """Save a tiny random ``VideoMAEForVideoClassification`` and its image processor to ``path``.

    Hidden 32, 1 layer, 2 heads, intermediate 64, patch 16, tubelet 2; seed fixed. The
    processor resizes the short side to ``image_size`` and centre crops ``image_size``
    square with ImageNet mean/std (like the Kinetics VideoMAE checkpoints at 224).
    """
    path = Path(path)
    model = make_videomae(videomae_config("tiny", num_labels, image_size, num_frames, labels))
    model.save_pretrained(path)
    _save_processor(path, image_size, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
    return path


def make_tiny_timesformer(
    path: str | Path, num_labels: int = 4, labels: Optional[Sequence[str]] = None,
    image_size: int = 32, num_frames: int = 8,
) -> Path:
    """Save a tiny random ``TimesformerForVideoClassification`` (no SDPA support) and a processor."""
    path = Path(path)
    config = TimesformerConfig(
        image_size=image_size, patch_size=16, num_frames=num_frames, hidden_size=32, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=64, **_label_maps(label_names(num_labels, labels)),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = TimesformerForVideoClassification(config).eval()
    model.save_pretrained(path)
    _save_processor(path, image_size, (0.45, 0.45, 0.45), (0.225, 0.225, 0.225))
    return path
