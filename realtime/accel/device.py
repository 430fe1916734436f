"""One rule for the device and the dtype a model runs at.

Every model backend, :class:`~realtime.accel.fast_model.FastModel` and the tools resolve the
user's ``device`` / ``dtype`` settings here:

* device: ``"auto"`` is CUDA when available, else the CPU; otherwise any device torch knows
  (``"cpu"``, ``"cuda"``, ``"cuda:N"``) or a ``torch.device``. Asking for CUDA where there is
  none fails (:func:`resolve_device`; ``check=False`` leaves that check to ``load()``).
* dtype: ``"auto"`` is half precision on CUDA (the model's preferred half type, ``half``;
  bfloat16 unless the backend says otherwise; float16 on GPUs without bfloat16), bfloat16 on a
  CPU that computes it natively (:func:`cpu_bf16`: AVX512-BF16 or AMX on x86, BF16 on Arm) and
  float32 on any other CPU, where bfloat16 is emulated (slower) or not available at all.
  ``float32``/``bfloat16``/``float16`` and their short names, or a ``torch.dtype``; ``None``
  keeps the module's own dtype. An explicit bfloat16 on a CPU without it is refused up front,
  naming what the CPU lacks, rather than failing (or crawling) inside a forward pass.

A bad value raises :class:`DeviceError`, which names the value and what is allowed.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
from pathlib import Path
from typing import Optional, Union

import torch

from realtime.core.errors import ModelError

logger = logging.getLogger(__name__)

DeviceLike = Union[str, torch.device]
DtypeLike = Union[str, torch.dtype, None]

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
DTYPE_CHOICES = "auto, float32, bfloat16 or float16"

DTYPE_NAMES: dict[str, torch.dtype] = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}
"""Names ``dtype`` settings may use (besides ``"auto"``), with or without a ``torch.`` prefix."""


class DeviceError(ModelError, ValueError):
    """A device or dtype that does not exist, or is not available here.

    A :class:`ModelError` (the command line prints it as one line) and a ``ValueError``
    (it is a bad argument value; callers that catch ValueError keep working)."""


def resolve_device(device: DeviceLike = "auto", *, check: bool = True) -> torch.device:
    """``"auto"``: CUDA when available, else CPU; any other name is parsed by torch.

    ``check``: a CUDA device where CUDA is not available raises :class:`DeviceError`
    (False: the caller checks when it loads)."""
    if isinstance(device, torch.device):
        resolved = device
    elif device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            resolved = torch.device(device)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise DeviceError(f"unknown device {device!r}; use {DEVICE_CHOICES}") from exc
    if check:
        require_available(resolved, device)
    return resolved


def _as_device(device: DeviceLike) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(device)


def require_available(device: torch.device, requested: object = None) -> None:
    """Raise :class:`DeviceError` when ``device`` is a CUDA device and CUDA is not available."""
    if device.type == "cuda" and not torch.cuda.is_available():
        asked = device if requested is None else requested
        raise DeviceError(f"device {str(asked)!r} requested but CUDA is not available; use auto or cpu")


CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
"""x86 ``/proc/cpuinfo`` flags of native bfloat16 arithmetic (Arm: the ``bf16`` feature)."""

CPU_BF16_ENV = "REALTIME_CPU_BF16"
"""Set to 0 or 1 to override the detection (a CPU reported wrongly, e.g. inside a VM)."""


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


@functools.lru_cache(maxsize=1)
def _detected_cpu_bf16() -> tuple[bool, str]:
    flags = _cpu_flags()
    native = sorted(f for f in CPU_BF16_FLAGS if f in flags)
    if native:
        return True, f"the CPU has {' and '.join(native)}"
    if platform.machine().lower() in ("aarch64", "arm64") and "bf16" in flags:
        return True, "the CPU has the Arm BF16 extension"
    if not flags:
        return False, "the CPU's features could not be read (no /proc/cpuinfo)"
    return False, f"the CPU has neither {' nor '.join(CPU_BF16_FLAGS)} (no native bfloat16)"


def cpu_bf16() -> tuple[bool, str]:
    """Whether this CPU computes bfloat16 natively, and the reason, for the log and errors."""
    forced = os.environ.get(CPU_BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1", f"{CPU_BF16_ENV}={forced}"
    return _detected_cpu_bf16()


def auto_dtype(device: DeviceLike, half: torch.dtype = torch.bfloat16) -> torch.dtype:
    """What ``"auto"`` means on ``device``: on a CPU bfloat16 where it is native
    (:func:`cpu_bf16`), else float32; on CUDA ``half`` (bfloat16 or float16), float16 where the
    GPU lacks bfloat16 (before Ampere)."""
    dev = _as_device(device)
    if dev.type != "cuda":
        return torch.bfloat16 if cpu_bf16()[0] else torch.float32
    if half == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        return torch.float16
    return half


def resolve_dtype(dtype: DtypeLike, device: DeviceLike, *,
                  half: torch.dtype = torch.bfloat16) -> Optional[torch.dtype]:
    """``None`` stays None (keep the module's dtype), a ``torch.dtype`` is kept, ``"auto"`` is
    :func:`auto_dtype` (``half``: the model's preferred half precision on CUDA), other names
    are looked up in :data:`DTYPE_NAMES`."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).lower().removeprefix("torch.")
    if key == "auto":
        chosen = auto_dtype(device, half)
        logger.info("dtype auto on %s: %s (%s)", device, str(chosen).removeprefix("torch."),
                    dtype_reason(chosen, device))
        return chosen
    if key not in DTYPE_NAMES:
        raise DeviceError(f"unknown dtype {dtype!r}; use {DTYPE_CHOICES}")
    wanted = DTYPE_NAMES[key]
    dev = _as_device(device)
    if wanted == torch.bfloat16 and dev.type == "cpu":
        native, why = cpu_bf16()
        failure = _cpu_bf16_failure()
        if failure is not None:
            raise DeviceError(f"dtype bfloat16 cannot run on this CPU ({why}; oneDNN: {failure}); "
                              f"use dtype auto or float32")
        if not native:
            logger.warning("dtype bfloat16 on a CPU without native bfloat16 (%s): it is emulated and "
                           "slower than float32; dtype auto picks float32 here", why)
    return wanted


@functools.lru_cache(maxsize=1)
def _cpu_bf16_failure() -> Optional[str]:
    """Why a bfloat16 convolution and matrix product fail on this CPU (None: they run).

    Tried once, on tiny tensors, with the kernels the models use (oneDNN's convolution where
    torch has it), so an impossible request fails here and not inside a forward pass."""
    try:
        x = torch.ones(1, 2, 3, 4, 4, dtype=torch.bfloat16)
        w = torch.ones(2, 2, 1, 1, 1, dtype=torch.bfloat16)
        with torch.inference_mode():
            if torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled:
                torch.ops.aten.mkldnn_convolution(x, w, None, [0, 0, 0], [1, 1, 1], [1, 1, 1], 1)
            torch.nn.functional.linear(x.flatten(1), torch.ones(4, x[0].numel(), dtype=torch.bfloat16))
    except RuntimeError as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


def dtype_reason(dtype: torch.dtype, device: DeviceLike) -> str:
    """Why ``"auto"`` chose ``dtype`` on ``device``, for the start-up log."""
    dev = _as_device(device)
    if dev.type == "cpu":
        return cpu_bf16()[1]
    return "half precision on the GPU"


__all__ = ["DEVICE_CHOICES", "DTYPE_CHOICES", "DTYPE_NAMES", "DeviceError", "DeviceLike", "DtypeLike",
           "auto_dtype", "cpu_bf16", "dtype_reason", "require_available", "resolve_device", "resolve_dtype"]
