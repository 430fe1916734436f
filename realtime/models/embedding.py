"""A classifier's probabilities and pooled features (its embedding, for likeness search) from one
pass, on the classifier's engine.

:class:`Embedder` runs a ``(logits, pooled features)`` adapter
(:func:`~realtime.accel.fast_model.i3d_logits_pooled_forward`,
:func:`~realtime.accel.fast_model.hf_logits_pooled_forward`) of the network a classifier has
loaded: on OpenVINO when the classifier runs there (converted once, cached as a variant of the
model), else on torch in the network's own device and dtype. Made on first use, so a classifier
that never embeds pays nothing.
"""

from __future__ import annotations

import threading
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn


class Embedder:
    def __init__(self, module: nn.Module, forward: Any, input_shape: Sequence[int], *, engine: str, name: str,
                 dtype: Any = "auto", cache_dir: Any = None, variant: str = "logits and pooled features") -> None:
        self.module = module
        self.forward = forward
        self.input_shape = tuple(int(s) for s in input_shape)
        self.engine = engine
        self.name = name
        self.cache_dir = cache_dir
        self.dtype = dtype                # OpenVINO's precision, as model.precision says
        self.variant = variant            # what ``forward`` computes (its OpenVINO cache entry)
        self._runner: Any = None
        self._ready = False
        self._lock = threading.Lock()

    def _prepare(self) -> None:
        if self.engine == "openvino":
            from realtime.accel.openvino_model import try_openvino
            self._runner = try_openvino(self.module, self.forward, self.input_shape, name=f"{self.name} ({self.variant})",
                                        dtype=self.dtype, cache_dir=self.cache_dir, variant=self.variant)
        self._ready = True

    def outputs(self, x: torch.Tensor) -> list[np.ndarray]:
        """Every output of ``forward`` (one array, or one per tensor it returns), float32."""
        with self._lock:
            if not self._ready:
                self._prepare()
        if self._runner is not None and tuple(x.shape[1:]) == self.input_shape:
            return [t.numpy() for t in self._runner.outputs(x)]
        param: Optional[torch.nn.Parameter] = next(self.module.parameters(), None)
        with torch.inference_mode():
            x = x.to(device=param.device, dtype=param.dtype) if param is not None else x
            out = self.forward(x)
            return [t.float().cpu().numpy() for t in (out if isinstance(out, (tuple, list)) else (out,))]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities from (B, classes) logits, computed as ``predict`` computes them."""
    return torch.softmax(torch.from_numpy(np.ascontiguousarray(logits, np.float32)), dim=-1).numpy()
