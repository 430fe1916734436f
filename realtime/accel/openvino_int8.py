"""INT8 post-training quantisation of an OpenVINO model with NNCF, into the engine's cache.

The float32 model (:func:`realtime.accel.openvino_model.converted_model`) is quantised from
calibration windows (activation ranges are measured on them, then NNCF's fast bias correction
runs); the result is an INT8 cache entry beside the float32 one, which ``model.precision: int8``
loads (:func:`realtime.accel.openvino_model.quantized_model`). Making it again replaces it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
from torch import nn

from realtime.accel.openvino_model import INSTALL_HINT, cache_entry, converted_model, write_entry
from realtime.core.errors import ConfigError

logger = logging.getLogger(__name__)


def nncf_version() -> Optional[str]:
    if importlib.util.find_spec("nncf") is None:
        return None
    import nncf
    return str(nncf.__version__)


def quantize(module: nn.Module, forward: Any, input_shape: Sequence[int], windows: Sequence[Any],
             to_input: Callable[[Any], np.ndarray], *, name: str, transformer: bool = False,
             calibration: str = "", cache_dir: Optional[os.PathLike[str] | str] = None) -> Path:
    """Quantise ``module`` (converted first if need be) from ``windows``; ``to_input`` turns one of
    them into the model's input (1, T, C, H, W) float32, so the set stays uint8 in memory until
    used. ``transformer``: NNCF's transformer scheme (attention models). Returns the INT8 IR."""
    version = nncf_version()
    if version is None:
        raise ConfigError(f"INT8 quantisation needs NNCF ({INSTALL_HINT})")
    import nncf
    import openvino as ov

    fp32 = converted_model(module, forward, input_shape, name=name, cache_dir=cache_dir)
    model = ov.Core().read_model(str(fp32))
    started = time.monotonic()
    logger.info("quantising %s to INT8 from %d calibration windows ...", name, len(windows))
    options: dict[str, Any] = {"subset_size": len(windows), "preset": nncf.QuantizationPreset.MIXED}
    if transformer:
        options["model_type"] = nncf.ModelType.TRANSFORMER
    quantized = nncf.quantize(model, nncf.Dataset(list(windows), to_input), **options)
    entry = cache_entry(module, input_shape, "int8", cache_dir)
    path = write_entry(entry, lambda out: ov.save_model(quantized, str(out / "model.xml"), compress_to_fp16=False),
                       {"model": name, "input_shape": list(input_shape), "precision": "int8", "nncf": version,
                        "calibration": calibration, "calibration_windows": len(windows)})
    logger.info("quantised %s in %.1f s: %s", name, time.monotonic() - started, path)
    return path
