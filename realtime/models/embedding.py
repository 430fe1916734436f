"""A classifier's pooled features as an embedding (for likeness search), on the classifier's engine.

:class:`Embedder` runs a pooled-features adapter (:func:`~realtime.accel.fast_model.i3d_pooled_forward`,
:func:`~realtime.accel.fast_model.hf_pooled_forward`) of the network a classifier has loaded: on
OpenVINO when the classifier runs there (converted once, cached as a variant of the model), else
on torch in the network's own device and dtype. Made on first use, so a classifier that never
embeds pays nothing.
"""

from __future__ import annotations

import threading
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn


class Embedder:
    def __init__(self, module: nn.Module, forward: Any, input_shape: Sequence[int], *, engine: str, name: str,
                 dtype: Any = "auto", cache_dir: Any = None) -> None:
        self.module = module
        self.forward = forward
        self.input_shape = tuple(int(s) for s in input_shape)
        self.engine = engine
        self.name = name
        self.cache_dir = cache_dir
        self.dtype = dtype                # OpenVINO's precision, as model.precision says
        self._runner: Any = None
        self._ready = False
        self._lock = threading.Lock()

    def _prepare(self) -> None:
        if self.engine == "openvino":
            from realtime.accel.openvino_model import try_openvino
            self._runner = try_openvino(self.module, self.forward, self.input_shape, name=f"{self.name} (embedding)",
                                        dtype=self.dtype, cache_dir=self.cache_dir, variant="pooled features")
        self._ready = True

    def __call__(self, x: torch.Tensor) -> np.ndarray:
        """(B, T, C, H, W) normalised windows -> (B, D) float32 pooled features."""
        with self._lock:
            if not self._ready:
                self._prepare()
        if self._runner is not None and tuple(x.shape[1:]) == self.input_shape:
            return self._runner.outputs(x)[0].numpy()
        param: Optional[torch.nn.Parameter] = next(self.module.parameters(), None)
        with torch.inference_mode():
            x = x.to(device=param.device, dtype=param.dtype) if param is not None else x
            return self.forward(x).float().cpu().numpy()
