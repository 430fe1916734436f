"""The network of a fine-tuned I3D (``realtime finetune``): Kinetics I3D cut in three, and a new head.

The network is :class:`FineTunedI3D`: ``lower`` (frozen I3D blocks up to and
including ``split``), ``top`` (the remaining I3D blocks up to ``Mixed_5c``) and
``head`` (:class:`MotionHead`).

Why the default head looks the way it does (measured on generated clips whose
classes differ only in motion: left/right/up/down/clockwise/anticlockwise, 10
training clips per class). Kinetics I3D's high-level features are dominated by
appearance: with a handful of clips per class every classifier on ``Mixed_5c``
or ``Mixed_4f`` - pooled linear, a 3-D conv head over the T x H x W map, or
``Mixed_5b``/``Mixed_5c`` themselves retrained - learnt left/right/up/down but
stayed at chance on clockwise vs anticlockwise. The direction
of time *is* in the features, under the appearance: the difference between a
layer's output for a clip and for the same clip played backwards (flipped back
into line) cancels everything that looks the same either way. That
time-antisymmetric part of ``Mixed_3c``, averaged over time and space and
standardised, separates all four classes with a strongly regularised linear
read-out (docs/performance.md has the measurements; see :class:`HeadConfig`). The
default ``motion`` head adds it to I3D's pooled ``Mixed_5c`` features, at a
smaller weight (kept for activities that differ in what is seen, e.g.
exercises). The cost is a second pass of the clip, played backwards, through the
blocks up to
``Mixed_3c`` (the measured cost is in docs/performance.md).

Saving, loading and classifying with it are :mod:`realtime.models.finetuned`; this
module is only the ``torch`` modules and the layer names they are cut at.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from realtime.models.i3d import InceptionI3d, load_flax

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

MOTION_CHANNELS: Mapping[str, int] = {"Mixed_3c": 480, "Mixed_4b": 512, "Mixed_4c": 512}
"""Layers the motion branch may tap, with their channels."""

_HALVINGS_TO_5C = {"Mixed_3c": 2, "Mixed_4b": 1, "Mixed_4c": 1}
"""Stride-2 pools between a motion layer and Mixed_5c (its map is pooled to Mixed_5c's grid)."""


@dataclass(frozen=True)
class HeadConfig:
    """Settings of :class:`MotionHead`.

    ``kind``:

    ``"motion"`` (default)
        two linear branches whose logits are added. The *motion* branch reads the
        time-antisymmetric part of an I3D layer (``motion_layer``, default ``Mixed_3c``):
        ``f(x) - flip_t(f(reversed x))``, the layer's T x H x W map for the clip minus its map
        for the clip played backwards (lined up again in time). Whatever looks the same
        played either way (appearance, background, to-and-fro motion) cancels; what depends
        on the direction of time (left vs right, clockwise vs anticlockwise, sitting down vs
        standing up) remains, and stays when the map is then averaged. The *appearance*
        branch is I3D's own kind of head on pooled ``Mixed_5c`` (what is seen: poses,
        objects), its standardised input scaled by ``appearance_scale`` (in effect a
        stronger L2 on it) so that the look of a few training clips cannot stand in for
        their motion.
    ``"conv"``
        a 3-D conv net (1x1x1 conv to ``hidden`` channels, 3x3x3 conv) over the ``Mixed_5c``
        map, then pooled: no motion branch.
    ``"linear"``
        pooled ``Mixed_5c``, linear: I3D's own head, kept for comparison.

    Inputs of the linear layers are standardised with training-set statistics
    (:meth:`MotionHead.set_normalization`). ``dropout``: before each linear layer. ``l2``:
    weight of the squared norm of the linear layers' weights added to the loss; with ten
    clips per class a strongly regularised linear read-out generalises best.

    The defaults (appearance input scaled by 0.3, ``l2`` 0.3) are the ones that separated
    motion-only classes on clips of another seed; the comparison with the alternatives is
    in docs/performance.md.
    """

    kind: str = "motion"
    motion_layer: str = "Mixed_3c"
    hidden: int = 128
    dropout: float = 0.5
    appearance_scale: float = 0.3
    l2: float = 0.3

    def __post_init__(self) -> None:
        if self.kind not in HEAD_KINDS:
            raise ValueError(f"head kind must be one of {', '.join(HEAD_KINDS)}, got {self.kind!r}")
        if self.motion_layer not in MOTION_CHANNELS:
            raise ValueError(f"motion layer must be one of {', '.join(MOTION_CHANNELS)}, got {self.motion_layer!r}")
        if self.hidden < 1:
            raise ValueError(f"head hidden channels must be >= 1, got {self.hidden}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"head dropout must be in [0, 1), got {self.dropout}")
        if self.appearance_scale < 0:
            raise ValueError(f"head appearance_scale must be >= 0, got {self.appearance_scale}")
        if self.l2 < 0:
            raise ValueError(f"head l2 must be >= 0, got {self.l2}")

    @property
    def uses_motion(self) -> bool:
        return self.kind == "motion"


def _pool(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, C): the average over time and space."""
    return x.float().mean(dim=(2, 3, 4))


class MotionHead(nn.Module):
    """Logits from the ``Mixed_5c`` map (B, 1024, T, H, W) and, for ``kind="motion"``, the
    motion map (B, C, T', H', W'); see :class:`HeadConfig`."""

    def __init__(self, num_classes: int, config: HeadConfig = HeadConfig()) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("feature_shift", torch.zeros(FEATURE_CHANNELS))
        self.register_buffer("feature_scale", torch.ones(FEATURE_CHANNELS))
        self.body: Optional[nn.Sequential] = None
        width = FEATURE_CHANNELS
        if config.kind == "conv":
            self.body = nn.Sequential(nn.Conv3d(FEATURE_CHANNELS, config.hidden, 1), nn.ReLU(inplace=True),
                                      nn.Conv3d(config.hidden, config.hidden, 3, padding=1), nn.ReLU(inplace=True))
            width = config.hidden
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(width, num_classes)
        self.motion_fc: Optional[nn.Linear] = None
        if config.uses_motion:
            channels = MOTION_CHANNELS[config.motion_layer]
            self.register_buffer("motion_shift", torch.zeros(channels))
            self.register_buffer("motion_scale", torch.ones(channels))
            self.motion_fc = nn.Linear(channels, num_classes)

    @torch.no_grad()
    def set_normalization(self, features: torch.Tensor, motion: Optional[torch.Tensor] = None) -> None:
        """Standardise the linear layers' inputs with the mean and standard deviation, per
        channel, of pooled training features (B, 1024[, ...]) and motion maps (B, C[, ...])."""
        def stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = _pool(x) if x.ndim == 5 else x.float()
            return x.mean(0), x.std(0, unbiased=False) + 1e-3
        shift, scale = stats(features)
        self.feature_shift.copy_(shift)
        self.feature_scale.copy_(scale)
        if self.motion_fc is not None and motion is not None:
            shift, scale = stats(motion)
            self.motion_shift.copy_(shift)
            self.motion_scale.copy_(scale)

    def penalty(self) -> torch.Tensor:
        """``l2`` times the squared norm of the linear layers' weights (added to the training loss)."""
        total = self.fc.weight.pow(2).sum()
        if self.motion_fc is not None:
            total = total + self.motion_fc.weight.pow(2).sum()
        return self.config.l2 * total

    def forward(self, x: torch.Tensor, motion: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.body is not None:
            z = _pool(self.body(x))
        else:
            z = (_pool(x) - self.feature_shift) / self.feature_scale
        if self.motion_fc is None:
            return self.fc(self.dropout(z.to(self.fc.weight.dtype)))
        if motion is None:
            raise ValueError("the motion head needs the motion map")
        logits = self.fc(self.dropout((z * self.config.appearance_scale).to(self.fc.weight.dtype)))
        m = (_pool(motion) - self.motion_shift) / self.motion_scale
        return logits + self.motion_fc(self.dropout(m.to(self.motion_fc.weight.dtype)))


def motion_map(forward: torch.Tensor, backward: torch.Tensor, halvings: int) -> torch.Tensor:
    """The time-antisymmetric part of a feature map, on the Mixed_5c grid.

    ``forward`` is a layer's output for a clip, ``backward`` for the same clip played
    backwards; ``backward`` is flipped back in time so both line up, subtracted, and the
    difference average-pooled ``halvings`` times by 2 ("SAME" rounding) to the grid
    ``Mixed_5c`` has.
    """
    size = list(forward.shape[-3:])
    for _ in range(halvings):
        size = [(s + 1) // 2 for s in size]
    return F.adaptive_avg_pool3d(forward - backward.flip(2), tuple(size))


# --------------------------------------------------------------------------- network


Features = tuple[torch.Tensor, Optional[torch.Tensor]]
"""(input of the trained part, motion map or None): what the frozen part produces per clip."""


class FineTunedI3D(nn.Module):
    """I3D cut in three: ``lower`` (frozen), ``top`` (trained I3D blocks), ``head`` (new).

    Input: (B, 3, T, H, W) RGB in [-1, 1] (channels-last), H and W any size the network
    accepts (224 by default). ``split`` is one of :data:`SPLITS` (the last frozen block),
    or None for a network trained end to end (``lower`` is then empty and ``top`` holds
    every block). With the ``motion`` head the clip is also run backwards through the
    blocks up to the motion layer (``Mixed_3c``: about 80 % of I3D's compute, the early
    high-resolution layers dominate), in the same batch as the clip itself.
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
        self._motion_index = names.index(head.motion_layer) if head.uses_motion else -1
        self._halvings = _HALVINGS_TO_5C[head.motion_layer]
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
                motion = motion_map(h[:n], h[n:], self._halvings)
                h = h[:n]
        return h, motion

    def _needs_backward(self, in_lower: bool) -> bool:
        return self._motion_index >= 0 and (self._motion_index < self._cut) == in_lower

    def features(self, x: torch.Tensor) -> Features:
        """The frozen part, what ``realtime finetune`` caches once per clip view:
        (``lower``'s output, the motion map if the motion layer is in ``lower``)."""
        x = x.contiguous(memory_format=torch.channels_last_3d)
        return self._run(self.lower, 0, x, self._needs_backward(in_lower=True))

    def head_inputs(self, features: torch.Tensor, motion: Optional[torch.Tensor] = None) -> Features:
        """What the head reads, from the output of :meth:`features`: (``Mixed_5c`` map, motion map)."""
        h = features.contiguous(memory_format=torch.channels_last_3d)
        h, late = self._run(self.top, self._cut, h, motion is None and self._needs_backward(in_lower=False))
        return h, motion if motion is not None else late

    def forward_features(self, features: torch.Tensor, motion: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits from the output of :meth:`features` (with ``split=None``: from the clip itself)."""
        return self.head(*self.head_inputs(features, motion))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"expected (B, 3, T, H, W) input, got {tuple(x.shape)}")
        return self.forward_features(*self.features(x))

    def trained_state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors ``model.safetensors`` holds: ``top`` and ``head`` (and ``lower`` if not frozen)."""
        keep = ("top.", "head.") if self.split is not None else ("lower.", "top.", "head.")
        return {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items() if k.startswith(keep)}
