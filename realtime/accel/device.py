"""One rule for the device and the dtype a model runs at.

Every model backend, :class:`~realtime.accel.fast_model.FastModel` and the tools resolve the
user's ``device`` / ``dtype`` settings here:

* device: ``"auto"`` is CUDA when available, else the CPU; otherwise any device torch knows
  (``"cpu"``, ``"cuda"``, ``"cuda:N"``) or a ``torch.device``. Asking for CUDA where there is
  none fails (:func:`resolve_device`; ``check=False`` leaves that check to ``load()``).
* dtype: ``"auto"`` is float32 on a CPU and half precision on CUDA: the model's preferred half
  type (``half``; bfloat16 unless the backend says otherwise), float16 on GPUs without bfloat16.
  ``float32``/``bfloat16``/``float16`` and their short names, or a ``torch.dtype``; ``None``
  keeps the module's own dtype.

A bad value raises :class:`DeviceError`, which names the value and what is allowed.
"""

from __future__ import annotations

from typing import Optional, Union

import torch

from realtime.core.errors import ModelError

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


def require_available(device: torch.device, requested: object = None) -> None:
    """Raise :class:`DeviceError` when ``device`` is a CUDA device and CUDA is not available."""
    if device.type == "cuda" and not torch.cuda.is_available():
        asked = device if requested is None else requested
        raise DeviceError(f"device {str(asked)!r} requested but CUDA is not available; use auto or cpu")


def auto_dtype(device: DeviceLike, half: torch.dtype = torch.bfloat16) -> torch.dtype:
    """What ``"auto"`` means on ``device``: float32 on a CPU; on CUDA ``half`` (bfloat16 or
    float16), float16 where the GPU lacks bfloat16 (before Ampere)."""
    dev = device if isinstance(device, torch.device) else torch.device(device)
    if dev.type != "cuda":
        return torch.float32
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
        return auto_dtype(device, half)
    if key not in DTYPE_NAMES:
        raise DeviceError(f"unknown dtype {dtype!r}; use {DTYPE_CHOICES}")
    return DTYPE_NAMES[key]


__all__ = ["DEVICE_CHOICES", "DTYPE_CHOICES", "DTYPE_NAMES", "DeviceError", "DeviceLike", "DtypeLike",
           "auto_dtype", "require_available", "resolve_device", "resolve_dtype"]
