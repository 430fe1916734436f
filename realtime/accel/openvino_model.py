"""OpenVINO as the inference engine on a CPU: conversion once, a cache on disk, one compiled model.

:class:`OpenVINOModel` runs a classifier network (the same ``Forward`` adapter
:class:`~realtime.accel.fast_model.FastModel` runs, ``(B, T, C, H, W) -> logits``) through
OpenVINO's CPU plugin, with the surface the backends use of ``FastModel``: ``predict``,
``logits``, ``probs``, ``warmup``, ``input_shape``, ``device``, ``dtype``.

Conversion goes through ``torch.export`` (OpenVINO's TorchScript route fails on the I3D port,
whose TF "SAME" pooling reads ``x.shape``), with the batch axis dynamic so one converted model
serves every batch size; the time axis and the frame size are fixed, so each window length is a
conversion of its own. The result is saved as OpenVINO IR with float32 weights
(``ov.save_model`` would compress them to float16 unless told not to) under
``<cache>/openvino/<key>/``, where the key hashes the network's weights, the input shape, the
weights' precision and the OpenVINO version: a changed model or an upgraded OpenVINO never
finds a stale entry. Each entry records the sizes and hashes of its files; an entry that does
not match them (a crash mid-write, a truncated copy) is converted again, never loaded.

Precision is chosen when compiling, not converting: ``INFERENCE_PRECISION_HINT`` bf16 where
the CPU has native bfloat16 (:func:`realtime.accel.device.cpu_bf16`), f32 otherwise.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from realtime.accel.device import DeviceError, DtypeLike, cpu_bf16
from realtime.accel.fast_model import realtime_cache_dir
from realtime.core.errors import ConfigError, ModelError
from realtime.core.types import ENGINES

logger = logging.getLogger(__name__)

TELEMETRY_ENV = "REALTIME_OPENVINO_TELEMETRY"
"""``1``: leave OpenVINO's usage telemetry as OpenVINO has it; otherwise this process sends none."""
OPENVINO_ENV = "REALTIME_OPENVINO"
"""``0``: ``engine: auto`` never picks OpenVINO even where it is installed (``1``: the default)."""
INSTALL_HINT = "pip install 'realtime[openvino]'"
FORMAT_VERSION = 1
"""Bumped when what this module writes into a cache entry changes."""

_PRECISION_HINTS = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}


class EngineError(ModelError):
    """A network that OpenVINO cannot take (export or conversion failed)."""


@functools.lru_cache(maxsize=1)
def openvino_version() -> Optional[str]:
    """The installed OpenVINO's version, or None when it is not installed (or fails to import)."""
    if importlib.util.find_spec("openvino") is None:
        return None
    try:
        import openvino as ov
    except Exception as exc:    # a broken install: say so once, behave as if absent
        logger.warning("OpenVINO is installed but does not import (%s: %s)", type(exc).__name__, exc)
        return None
    _no_telemetry()
    return str(ov.get_version())


def _no_telemetry() -> None:
    """Keep OpenVINO's converter from sending usage data from this process (it would, unasked, on
    every conversion): a video app on someone's laptop has no business phoning home. The package
    itself may still report its import unless the machine opted out (``opt_in_out --opt_out``)."""
    if os.environ.get(TELEMETRY_ENV, "").strip() == "1" or importlib.util.find_spec("openvino_telemetry") is None:
        return
    try:
        # The converter's own set-up of the process's one Telemetry instance, made now so that
        # its later calls reuse it (they set it up again only for another application name).
        from openvino.tools.ovc.telemetry_utils import init_ovc_telemetry
        telemetry = init_ovc_telemetry()
    except Exception as exc:             # its internals changed: nothing worse than before
        logger.debug("OpenVINO telemetry left as it is: %s", exc)
        return
    telemetry.consent = False


def resolve_engine(requested: str, device: torch.device, *, int8: bool = False) -> str:
    """``"torch"`` or ``"openvino"`` for ``model.engine`` = ``requested`` on ``device``.

    ``auto`` is OpenVINO on a CPU where it is installed (unless ``REALTIME_OPENVINO=0``), torch
    elsewhere; ``int8`` (``model.precision: int8``) needs OpenVINO. Asking for OpenVINO where it
    cannot run is an error naming the reason."""
    if requested not in ENGINES:
        raise ConfigError(f"model.engine {requested!r}: expected one of {', '.join(ENGINES)}")
    if int8 and requested == "torch":
        raise ConfigError("model.precision int8 runs on OpenVINO: set model.engine to auto or openvino")
    if requested == "torch":
        return "torch"
    on_cpu = torch.device(device).type == "cpu"
    if requested == "openvino" or int8:
        what = "model.precision int8" if int8 else "model.engine openvino"
        if not on_cpu:
            raise DeviceError(f"{what} runs on the CPU (OpenVINO), but model.device is {device}; "
                              "use --device cpu, or engine torch (or auto) on a GPU")
        if openvino_version() is None:
            raise ConfigError(f"{what}: OpenVINO is not installed ({INSTALL_HINT})")
        return "openvino"
    if not on_cpu or os.environ.get(OPENVINO_ENV, "").strip() == "0" or openvino_version() is None:
        return "torch"
    return "openvino"


def openvino_dtype(requested: DtypeLike) -> torch.dtype:
    """The precision OpenVINO computes in for ``model.precision`` = ``requested``: auto is bfloat16
    on a CPU with native bfloat16, float32 elsewhere; bfloat16 asked for on a CPU without it runs
    in float32 (OpenVINO's CPU plugin has no emulation), with a warning."""
    native, why = cpu_bf16()
    if requested is None or str(requested).lower().removeprefix("torch.") == "auto":
        chosen = torch.bfloat16 if native else torch.float32
        logger.info("dtype auto on cpu (openvino): %s (%s)", str(chosen).removeprefix("torch."), why)
        return chosen
    from realtime.accel.device import DTYPE_CHOICES, DTYPE_NAMES
    key = requested if isinstance(requested, torch.dtype) else DTYPE_NAMES.get(str(requested).lower())
    if key is None:
        raise DeviceError(f"unknown dtype {requested!r}; use {DTYPE_CHOICES}")
    if key == torch.bfloat16 and not native:
        logger.warning("dtype bfloat16: OpenVINO computes in float32 on this CPU (%s)", why)
        return torch.float32
    return key


# --------------------------------------------------------------------------- cache


def weights_digest(module: nn.Module) -> str:
    """A hash of ``module``'s parameters and buffers (names, dtypes, shapes and values): the
    model's identity in the cache key, whatever directory or hub id it was loaded from."""
    h = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        if t.numel():   # flat first: a size-1 axis may carry any stride, which view() refuses
            h.update(t.reshape(-1).contiguous().view(torch.uint8).numpy().data)
    return h.hexdigest()


def cache_key(digest: str, input_shape: Sequence[int], weights: str, version: str, variant: str = "") -> str:
    text = json.dumps({"weights": digest, "input": list(input_shape), "precision": weights,
                       "openvino": version, "format": FORMAT_VERSION, "variant": variant}, sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def _file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def entry_problem(entry: Path) -> Optional[str]:
    """Why the cache entry ``entry`` cannot be trusted, or None when it is whole."""
    meta_path = entry / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
        files = meta["files"]
    except FileNotFoundError:
        return "no meta.json"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"meta.json unreadable ({exc})"
    for name in ("model.xml", "model.bin"):
        path = entry / name
        want = files.get(name) if isinstance(files, dict) else None
        if not path.is_file() or not isinstance(want, dict):
            return f"{name} missing"
        if path.stat().st_size != want.get("size"):
            return f"{name} is {path.stat().st_size} bytes, expected {want.get('size')}"
        if _file_digest(path) != want.get("blake2b"):
            return f"{name} does not match its hash"
    return None


def _convert(module: nn.Module, forward: Any, input_shape: Sequence[int], out_dir: Path) -> None:
    """Export ``forward`` (one tensor, or a tuple of them, per batch) with a dynamic batch axis,
    convert it and save IR into ``out_dir``."""
    import openvino as ov

    class Exported(nn.Module):
        def __init__(self, network: nn.Module) -> None:
            super().__init__()
            self.network = network

        def forward(self, x: torch.Tensor) -> Any:
            return forward(x)

    # Batch 2 in the example: torch.export specialises an axis whose example size is 1.
    example = torch.zeros((2, *input_shape), dtype=torch.float32)
    batch = torch.export.Dim("batch", min=1, max=1024)
    try:
        # torch's and OpenVINO's deprecation notices about each other's internals are not the user's
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            exported = torch.export.export(Exported(module).eval(), (example,),
                                           dynamic_shapes={"x": {0: batch}})
            converted = ov.convert_model(exported)
    except Exception as exc:   # export and conversion raise many types; any of them means "cannot"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise EngineError(f"{type(exc).__name__}: {first[:300]}") from exc
    converted.reshape({0: [-1, *input_shape]})
    ov.save_model(converted, str(out_dir / "model.xml"), compress_to_fp16=False)


def cache_entry(module: nn.Module, input_shape: Sequence[int], weights: str,
                cache_dir: Optional[os.PathLike[str] | str] = None, variant: str = "") -> Path:
    """Where the OpenVINO model of ``module`` for windows of ``input_shape`` with ``weights``
    ("float32" or "int8") lives: ``<cache>/openvino/<key>``. ``variant`` tells apart two
    functions of the same weights (what a caller's forward computes from them)."""
    version = openvino_version()
    if version is None:
        raise ConfigError(f"OpenVINO is not installed ({INSTALL_HINT})")
    root = Path(cache_dir).expanduser() if cache_dir is not None else realtime_cache_dir()
    return root / "openvino" / cache_key(weights_digest(module), input_shape, weights, version, variant)


def whole_entry(entry: Path, name: str) -> Optional[Path]:
    """``entry``'s model.xml when the entry is whole; a damaged one is removed (with a warning)."""
    if not entry.exists():
        return None
    problem = entry_problem(entry)
    if problem is None:
        return entry / "model.xml"
    logger.warning("the cached OpenVINO model %s of %s is damaged (%s); it will be made again", entry, name, problem)
    shutil.rmtree(entry, ignore_errors=True)
    return None


def write_entry(entry: Path, save: Callable[[Path], None], meta: dict[str, Any]) -> Path:
    """Make the cache entry ``entry``: ``save(dir)`` writes model.xml and model.bin into a fresh
    directory beside it, which is renamed into place with its meta.json once whole."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.parent))
    try:
        save(tmp)
        files = {n: {"size": (tmp / n).stat().st_size, "blake2b": _file_digest(tmp / n)}
                 for n in ("model.xml", "model.bin")}
        meta = {**meta, "openvino": openvino_version(), "format": FORMAT_VERSION, "files": files,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        shutil.rmtree(entry, ignore_errors=True)    # a replaced INT8 model, or a damaged entry
        try:
            os.replace(tmp, entry)   # whole entries only: a reader never sees a half-written one
        except OSError:
            if entry_problem(entry) is not None:   # another process put a whole entry there first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return entry / "model.xml"


def converted_model(module: nn.Module, forward: Any, input_shape: Sequence[int], *, name: str,
                    cache_dir: Optional[os.PathLike[str] | str] = None, variant: str = "") -> Path:
    """The float32 IR of ``module`` for windows of ``input_shape`` (T, C, H, W): from the cache
    when a whole entry is there, else converted now (once; logged with the time it took)."""
    entry = cache_entry(module, input_shape, "float32", cache_dir, variant)
    found = whole_entry(entry, name)
    if found is not None:
        logger.debug("OpenVINO model of %s from %s", name, entry)
        return found
    version = str(openvino_version())
    logger.info("converting %s to OpenVINO %s for %s-frame windows (once; cached in %s) ...",
                name, version.split("-")[0], input_shape[0], entry)
    started = time.monotonic()
    path = write_entry(entry, lambda out: _convert(module, forward, input_shape, out),
                       {"model": name, "input_shape": list(input_shape), "precision": "float32"})
    logger.info("converted %s to OpenVINO in %.1f s", name, time.monotonic() - started)
    return path


def quantized_model(module: nn.Module, input_shape: Sequence[int], *, name: str,
                    cache_dir: Optional[os.PathLike[str] | str] = None) -> Path:
    """The INT8 IR that ``realtime models quantize`` made of ``module`` for ``input_shape``."""
    found = whole_entry(cache_entry(module, input_shape, "int8", cache_dir), name)
    if found is None:
        raise ModelError(f"no INT8 model of {name} for {input_shape[0]}-frame windows yet: make one with "
                         f"`realtime models quantize --model {name} --calibration DIR` (DIR: a folder of "
                         "clips like those it will classify)")
    return found


# --------------------------------------------------------------------------- runner


class OpenVINOModel:
    """Runs a converted network on OpenVINO's CPU plugin; a drop-in for ``FastModel`` on a CPU.

    ``dtype``: the precision to compute in (``torch.float32`` or ``torch.bfloat16``; see
    :func:`openvino_dtype`); with ``weights="int8"`` the model ``realtime models quantize`` made
    runs instead (its layers that stay in floating point compute in ``dtype``). ``threads``: OpenVINO's inference threads (default: torch's
    ``get_num_threads()``, so both engines use the cores the same way). Calls are serialised."""

    engine = "openvino"
    compiled = False
    cuda_graphs = False

    def __init__(self, module: nn.Module, forward: Any, input_shape: Sequence[int], *, name: str,
                 dtype: torch.dtype = torch.float32, threads: Optional[int] = None,
                 cache_dir: Optional[os.PathLike[str] | str] = None, weights: str = "float32",
                 variant: str = "") -> None:
        import openvino as ov

        self.input_shape = tuple(int(s) for s in input_shape)
        self.device = torch.device("cpu")
        self.dtype = dtype
        self.name = name
        self.weights = weights
        if weights == "int8":
            self.path = quantized_model(module, self.input_shape, name=name, cache_dir=cache_dir)
        else:
            self.path = converted_model(module, forward, self.input_shape, name=name, cache_dir=cache_dir,
                                        variant=variant)
        self.threads = int(threads or torch.get_num_threads())
        config = {"INFERENCE_PRECISION_HINT": _PRECISION_HINTS.get(dtype, "f32"),
                  "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": self.threads}
        core = ov.Core()
        started = time.monotonic()
        try:
            self._compiled = core.compile_model(core.read_model(str(self.path)), "CPU", config)
        except RuntimeError as exc:
            raise EngineError(f"OpenVINO cannot compile {self.path}: {str(exc).strip()[:300]}") from exc
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()
        # The first inference sets up the plugin's kernels and is slow: pay it here,
        # not on the first window a user waits for.
        self.warmup((1,))
        logger.info("%s on OpenVINO (CPU, %s%s, %d threads), compiled and warmed up in %.2f s", name,
                    "int8 with " if weights == "int8" else "", str(dtype).removeprefix("torch."), self.threads,
                    time.monotonic() - started)

    def __repr__(self) -> str:
        return f"OpenVINOModel({self.name}, input={self.input_shape}, dtype={self.dtype}, path={self.path})"

    def outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every output of the network for a (B, *input_shape) batch, as new float32 CPU tensors."""
        if x.ndim != 1 + len(self.input_shape) or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"expected input of shape (B, {', '.join(map(str, self.input_shape))}), "
                             f"got {tuple(x.shape)}")
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        with self._lock:
            result = self._request.infer({0: array})
            return [torch.from_numpy(np.array(result[i], dtype=np.float32, copy=True)) for i in range(len(result))]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) windows -> (B, classes) float32 logits (a new CPU tensor)."""
        return self.outputs(x)[0]

    __call__ = logits

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=-1)

    def predict(self, x: torch.Tensor) -> np.ndarray:
        """Softmax probabilities as a float32 numpy array."""
        return self.probs(x).numpy().astype(np.float32, copy=False)

    def warmup(self, batch_sizes: Iterable[int] = (1,)) -> None:
        for batch in batch_sizes:
            self.logits(torch.zeros((int(batch), *self.input_shape)))


def try_openvino(module: nn.Module, forward: Any, input_shape: Sequence[int], *, name: str,
                 dtype: DtypeLike = "auto", cache_dir: Optional[os.PathLike[str] | str] = None,
                 int8: bool = False, variant: str = "") -> Optional[OpenVINOModel]:
    """``module`` on OpenVINO, or None (with one warning saying why) when it does not convert:
    the caller then runs it on torch. INT8 has no torch fallback: its errors are raised."""
    try:
        return OpenVINOModel(module, forward, input_shape, name=name, dtype=openvino_dtype(dtype),
                             cache_dir=cache_dir, weights="int8" if int8 else "float32", variant=variant)
    except EngineError as exc:
        if int8:
            raise
        logger.warning("%s does not run on OpenVINO (%s); running it on torch", name, exc)
        return None


__all__ = ["EngineError", "INSTALL_HINT", "OPENVINO_ENV", "OpenVINOModel", "converted_model", "entry_problem",
           "openvino_dtype", "openvino_version", "resolve_engine", "try_openvino", "weights_digest"]
