"""Fast model execution: reduced precision, SDPA, CUDA graphs, ``torch.compile``, warm-up.

:class:`FastModel` wraps any classifier network behind one function ``x -> logits``
where ``x`` is a ``(B, T, C, H, W)`` batch of normalised windows (the layout
:meth:`realtime.accel.device_ring.DeviceFrameRing.gather` produces). The backends keep their own
loading code; each provides its forward adapter (:func:`hf_forward`,
:func:`i3d_forward`) and hands its network to :class:`FastModel`:

* device and dtype: :mod:`realtime.accel.device` (``"auto"``: bfloat16 on CUDA, float16 on
  GPUs without bf16, float32 on CPU);
* attention: :func:`use_sdpa` switches ``transformers`` models to
  ``scaled_dot_product_attention`` where they support it; ``sdpa_backend`` pins which
  of its kernels runs (:data:`realtime.core.types.SDPA_BACKENDS`; "auto" leaves the choice to torch);
* plain tensor attributes: :func:`move_plain_tensors` (see below);
* CUDA graphs (CUDA only, on by default there): one graph per batch size in use,
  captured on first use (or in :meth:`FastModel.warmup`) after warm-up iterations on
  a side stream, replayed with static input buffers; graphs share one memory pool;
* ``torch.compile`` (optional): with a persistent inductor cache under
  ``~/.cache/realtime`` (:func:`configure_compile_cache`), so a restart reuses the
  compiled kernels.

The trap this module exists for: ``nn.Module.to()`` moves parameters and buffers
only. VideoMAE keeps its sinusoidal position table as a plain tensor attribute
(``model.videomae.embeddings.position_embeddings``), so after ``model.to("cuda")`` it
stays on the CPU, every forward copies it host-to-device, and CUDA graph capture
fails ("operation not permitted when stream is capturing"). :func:`move_plain_tensors`
moves every such attribute of every submodule.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from realtime.accel.device import DeviceLike, DtypeLike, resolve_device, resolve_dtype
from realtime.accel.graph_gate import CUDA_GRAPH_CAPTURE_LOCK, device_synchronize, exclusive_capture
from realtime.core.types import SDPA_BACKENDS

logger = logging.getLogger(__name__)

Forward = Callable[[torch.Tensor], torch.Tensor]
"""A network's forward as ``(B, T, C, H, W) -> (B, classes) logits``."""


# --------------------------------------------------------------------------- settings


def realtime_cache_dir() -> Path:
    """``$REALTIME_CACHE`` or ``~/.cache/realtime`` (where the I3D weights live too)."""
    root = os.environ.get("REALTIME_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "realtime"


def configure_compile_cache(root: Optional[Union[str, os.PathLike[str]]] = None) -> Path:
    """Point inductor's and Triton's on-disk caches under ``root`` (default
    :func:`realtime_cache_dir`) unless the user already set them; returns the inductor dir.

    Must run before the first ``torch.compile`` call compiles anything: inductor reads
    ``TORCHINDUCTOR_CACHE_DIR`` when it first needs its cache.
    """
    base = Path(root).expanduser() if root is not None else realtime_cache_dir()
    inductor = Path(os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(base / "inductor")))
    os.environ.setdefault("TRITON_CACHE_DIR", str(base / "triton"))
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    inductor.mkdir(parents=True, exist_ok=True)
    return inductor


# --------------------------------------------------------------------------- plain tensors


def _module_names(module: nn.Module) -> Iterable[tuple[str, nn.Module]]:
    return module.named_modules(remove_duplicate=True)


def plain_tensor_attributes(module: nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor a submodule holds as a plain attribute (not a parameter or buffer),
    by qualified name; tensors inside a list, tuple or dict attribute get ``[i]``/``[key]``."""
    found: dict[str, torch.Tensor] = {}
    for prefix, sub in _module_names(module):
        for name, value in vars(sub).items():
            qualified = f"{prefix}.{name}" if prefix else name
            if isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter):
                found[qualified] = value
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if isinstance(item, torch.Tensor):
                        found[f"{qualified}[{i}]"] = item
            elif isinstance(value, dict) and name not in ("_parameters", "_buffers", "_modules"):
                for key, item in value.items():
                    if isinstance(item, torch.Tensor):
                        found[f"{qualified}[{key!r}]"] = item
    return found


def _moved(t: torch.Tensor, device: Optional[torch.device], dtype: Optional[torch.dtype]) -> torch.Tensor:
    target_dtype = dtype if (dtype is not None and t.is_floating_point()) else t.dtype
    return t.to(device=device if device is not None else t.device, dtype=target_dtype)


def move_plain_tensors(module: nn.Module, device: Optional[DeviceLike] = None,
                       dtype: Optional[torch.dtype] = None) -> list[str]:
    """Move the plain tensor attributes of ``module`` and all its submodules.

    ``nn.Module.to`` leaves them where they are; call this right after it with the
    same device. ``dtype`` applies to floating-point tensors only (integer index
    tables keep theirs). Lists, tuples and dicts of tensors are rebuilt with the
    moved tensors. Returns the qualified names of what was moved.
    """
    dev = torch.device(device) if device is not None else None
    moved: list[str] = []
    for prefix, sub in _module_names(module):
        for name, value in list(vars(sub).items()):
            qualified = f"{prefix}.{name}" if prefix else name
            if isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter):
                new = _moved(value, dev, dtype)
                if new is not value:
                    object.__setattr__(sub, name, new)
                    moved.append(qualified)
            elif isinstance(value, (list, tuple)) and any(isinstance(v, torch.Tensor) for v in value):
                items = [_moved(v, dev, dtype) if isinstance(v, torch.Tensor) else v for v in value]
                if any(a is not b for a, b in zip(items, value)):
                    rebuilt = type(value)(items) if isinstance(value, list) else tuple(items)
                    object.__setattr__(sub, name, rebuilt)
                    moved.append(qualified)
            elif (isinstance(value, dict) and name not in ("_parameters", "_buffers", "_modules")
                  and any(isinstance(v, torch.Tensor) for v in value.values())):
                for key, item in list(value.items()):
                    if isinstance(item, torch.Tensor):
                        new = _moved(item, dev, dtype)
                        if new is not item:
                            value[key] = new
                            moved.append(f"{qualified}[{key!r}]")
    if moved:
        logger.debug("moved plain tensor attributes to %s/%s: %s", dev, dtype, ", ".join(moved))
    return moved


# --------------------------------------------------------------------------- backends


def use_sdpa(model: nn.Module) -> str:
    """Switch a ``transformers`` model to SDPA attention where it supports it.

    Returns the implementation in use afterwards ("sdpa", "eager", ...; "n/a" for
    networks without a ``transformers`` config, e.g. I3D).
    """
    config = getattr(model, "config", None)
    current = getattr(config, "_attn_implementation", None)
    if config is None or current is None:
        return "n/a"
    if current == "sdpa":
        return current
    setter = getattr(model, "set_attn_implementation", None)
    if callable(setter):
        try:
            setter("sdpa")
        except (ValueError, ImportError, NotImplementedError) as exc:
            logger.warning("%s does not support SDPA attention (%s); keeping %r",
                           type(model).__name__, exc, current)
    return str(getattr(model.config, "_attn_implementation", current))


_NO_KERNEL = ("No available kernel", "No viable backend")   # torch's words, on CUDA and on CPU


def with_sdpa_backend(forward: Forward, backend: str) -> Forward:
    """``forward`` running with only the ``backend`` kernel of ``scaled_dot_product_attention``
    allowed ("auto": unchanged). A backend with no kernel for these inputs (cuDNN on a CPU, flash
    attention in float32 on CUDA...) raises a ValueError naming it, not torch's bare "No
    available kernel"."""
    if backend not in SDPA_BACKENDS:
        raise ValueError(f"sdpa backend {backend!r}: expected one of {', '.join(SDPA_BACKENDS)}")
    if backend == "auto":
        return forward
    from torch.nn.attention import SDPBackend, sdpa_kernel
    kernel = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
              "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}[backend]

    def pinned(x: torch.Tensor) -> torch.Tensor:
        try:
            with sdpa_kernel([kernel]):
                return forward(x)
        except RuntimeError as exc:
            if not any(text in str(exc) for text in _NO_KERNEL):
                raise
            raise ValueError(f"sdpa backend {backend!r} has no attention kernel for {x.dtype} inputs on "
                             f"{x.device}; use 'auto' or another of {', '.join(SDPA_BACKENDS[1:])}") from exc
    return pinned


def compile_on(device: DeviceLike, wanted: bool, name: str) -> bool:
    """Whether to ``torch.compile`` ``name`` on ``device``: only on CUDA (on a CPU, inductor would
    compile every batch size for a small gain), with a warning when asked for elsewhere."""
    if wanted and torch.device(device).type != "cuda":
        logger.warning("model.compile applies to CUDA devices; %s runs uncompiled on %s", name, device)
        return False
    return bool(wanted)


def hf_forward(model: nn.Module) -> Forward:
    """Adapter for ``transformers`` video classifiers: ``pixel_values`` (B, T, C, H, W) -> logits."""
    def forward(x: torch.Tensor) -> torch.Tensor:
        return model(pixel_values=x).logits
    return forward


def i3d_forward(model: nn.Module) -> Forward:
    """Adapter for :class:`~realtime.models.i3d.InceptionI3d`: (B, T, C, H, W) -> (B, C, T, H, W)
    channels-last (one copy on the device; a view when the input is already channels-last)."""
    def forward(x: torch.Tensor) -> torch.Tensor:
        return model(x.permute(0, 2, 1, 3, 4).contiguous(memory_format=torch.channels_last_3d))
    return forward


def hf_logits_pooled_forward(model: nn.Module) -> Forward:
    """``transformers`` video classifiers: (B, T, C, H, W) -> (logits, pooled features) in one pass;
    the pooled features are the last hidden state averaged over its tokens (B, hidden)."""
    def forward(x: torch.Tensor) -> Any:
        out = model(pixel_values=x, output_hidden_states=True)
        return out.logits, out.hidden_states[-1].mean(dim=1)
    return forward


def i3d_logits_pooled_forward(model: nn.Module) -> Forward:
    """:class:`~realtime.models.i3d.InceptionI3d`: (B, T, C, H, W) -> (logits, ``Mixed_5c`` averaged over
    time and space (B, 1024)) in one pass."""
    def forward(x: torch.Tensor) -> Any:
        x = model.features(x.permute(0, 2, 1, 3, 4).contiguous(memory_format=torch.channels_last_3d))
        return model.head(x), x.mean(dim=(2, 3, 4))
    return forward


# --------------------------------------------------------------------------- runner


@dataclass
class _Graph:
    batch: int
    graph: "torch.cuda.CUDAGraph"
    static_in: torch.Tensor
    static_out: torch.Tensor


class FastModel:
    """Runs ``forward`` (see :data:`Forward`) of ``module`` as fast as the device allows.

    ``module`` is moved to ``device`` and ``dtype`` (``None``: keep its dtype; ``"auto"``:
    :func:`~realtime.accel.device.auto_dtype`), put in eval mode without gradients, its plain tensor attributes
    moved too, and switched to SDPA attention (``sdpa=True``, ``transformers`` models).
    ``input_shape`` is one window's (T, C, H, W).

    ``cuda_graphs``: None = on for CUDA devices; ignored (with a warning) elsewhere.
    ``graph_batches``: batch sizes to capture graphs for; a batch is padded up to the
    smallest of them that fits (larger batches run eagerly). None: a graph per batch size
    as it is first seen, at most ``max_graphs`` (then padding to a captured size, or
    eager). ``compile``: ``torch.compile`` the forward (``compile_mode``, ``compile_backend``),
    with the persistent cache of :func:`configure_compile_cache`.

    Calls are serialised by a lock and run under ``torch.no_grad()`` (not inference mode,
    so buffers and results are ordinary tensors callers may modify). With CUDA graphs the
    returned tensors are copies; the static output is never handed out.
    """

    engine = "torch"

    def __init__(self, module: nn.Module, forward: Forward, input_shape: Sequence[int], *,
                 device: DeviceLike = "auto", dtype: DtypeLike = None, sdpa: bool = True,
                 cuda_graphs: Optional[bool] = None, graph_batches: Optional[Sequence[int]] = None,
                 max_graphs: int = 8, compile: bool = False, compile_mode: Optional[str] = None,
                 compile_backend: str = "inductor", warmup_iters: int = 2,
                 sdpa_backend: str = "auto") -> None:
        if len(input_shape) != 4:
            raise ValueError(f"input_shape must be one window's (T, C, H, W), got {tuple(input_shape)}")
        self.device = resolve_device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        wanted = resolve_dtype(dtype, self.device)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.module = module
        module.eval().requires_grad_(False)
        if wanted is not None:
            module.to(device=self.device, dtype=wanted)
        else:
            module.to(self.device)
        self.dtype: torch.dtype = wanted if wanted is not None else _module_dtype(module)
        self.moved_attributes = move_plain_tensors(module, self.device, self.dtype)
        self.attn = use_sdpa(module) if sdpa else str(getattr(getattr(module, "config", None),
                                                              "_attn_implementation", "n/a"))
        self.sdpa_backend = sdpa_backend
        forward = with_sdpa_backend(forward, sdpa_backend)
        self.compiled = bool(compile)
        if compile:
            configure_compile_cache()
            self._fn: Forward = torch.compile(forward, mode=compile_mode, backend=compile_backend,
                                              dynamic=False)
        else:
            self._fn = forward
        use_graphs = self.device.type == "cuda" if cuda_graphs is None else bool(cuda_graphs)
        if use_graphs and self.device.type != "cuda":
            logger.warning("CUDA graphs need a CUDA device; running %s eagerly", self.device)
            use_graphs = False
        self.cuda_graphs = use_graphs
        self.graph_batches = tuple(sorted({int(b) for b in graph_batches})) if graph_batches else None
        self.max_graphs = max(1, int(max_graphs))
        self.warmup_iters = max(1, int(warmup_iters))
        self._graphs: dict[int, _Graph] = {}
        self._pool: Any = None
        self._eager_buffer: Optional[torch.Tensor] = None
        self._lock = threading.RLock()
        logger.info("fast model on %s: dtype=%s attn=%s (%s kernel) cuda_graphs=%s compile=%s%s",
                    self.device, str(self.dtype).removeprefix("torch."), self.attn, sdpa_backend, self.cuda_graphs,
                    self.compiled, f", moved {self.moved_attributes}" if self.moved_attributes else "")

    def __repr__(self) -> str:
        return (f"FastModel({type(self.module).__name__}, device={self.device}, dtype={self.dtype}, "
                f"attn={self.attn!r}, cuda_graphs={self.cuda_graphs}, compile={self.compiled}, "
                f"graphs={sorted(self._graphs)})")

    # ------------------------------------------------------------------ graphs

    @property
    def captured_batches(self) -> tuple[int, ...]:
        return tuple(sorted(self._graphs))

    def _serving_batch(self, batch: int) -> Optional[int]:
        """The graph batch size that serves ``batch`` (capturing allowed), or None for eager."""
        if not self.cuda_graphs:
            return None
        if self.graph_batches is not None:
            return next((b for b in self.graph_batches if b >= batch), None)
        if batch in self._graphs or len(self._graphs) < self.max_graphs:
            return batch
        return next((b for b in sorted(self._graphs) if b >= batch), None)

    def _new_input(self, batch: int) -> torch.Tensor:
        # A normal tensor, never an inference tensor: callers fill it in place outside inference mode.
        with torch.inference_mode(False):
            return torch.zeros((batch, *self.input_shape), dtype=self.dtype, device=self.device)

    def _capture(self, batch: int) -> _Graph:
        # The lock for all of it: the side and capture streams come from torch's shared pool and
        # can be a frame ring's stream, which must not queue work while this captures.
        with CUDA_GRAPH_CAPTURE_LOCK:
            return self._capture_locked(batch)

    def _capture_locked(self, batch: int) -> _Graph:
        static_in = self._new_input(batch)
        current = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(current)
        with torch.cuda.stream(side):
            for _ in range(self.warmup_iters):   # cuBLAS/cuDNN handles, autotuning, compilation
                self._fn(static_in)
        current.wait_stream(side)
        device_synchronize(self.device)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        # thread_local: capture threads may keep uploading frames (other streams) meanwhile;
        # exclusive_capture keeps this capture from overlapping theirs.
        with exclusive_capture(graph), torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
            static_out = self._fn(static_in)
        device_synchronize(self.device)
        logger.info("captured a CUDA graph for batch %d", batch)
        return _Graph(batch, graph, static_in, static_out)

    def _graph(self, batch: int) -> Optional[_Graph]:
        serving = self._serving_batch(batch)
        if serving is None:
            return None
        entry = self._graphs.get(serving)
        if entry is None:
            try:
                entry = self._capture(serving)
            except RuntimeError as exc:
                # e.g. a model that syncs with the host inside forward: run it eagerly instead.
                logger.warning("CUDA graph capture failed for batch %d (%s); running eagerly from now on",
                               serving, exc)
                self.cuda_graphs = False
                return None
            self._graphs[serving] = entry
        return entry

    # ------------------------------------------------------------------ running

    def serve_batches(self, sizes: Iterable[int]) -> None:
        """Capture graphs only for these batch sizes from now on; a batch is padded up to the
        smallest of them that fits (larger ones run eagerly). Graphs already captured stay."""
        with self._lock:
            self.graph_batches = tuple(sorted({int(b) for b in sizes}))

    def input_buffer(self, batch: int) -> torch.Tensor:
        """A (batch, T, C, H, W) device tensor to fill in place (e.g. by
        :meth:`~realtime.accel.device_ring.DeviceFrameRing.gather`) and pass to :meth:`logits`: with CUDA
        graphs it is the graph's static input, so no copy is made."""
        with self._lock, torch.no_grad():
            entry = self._graph(batch)
            if entry is not None:
                return entry.static_in[:batch]
            if self._eager_buffer is None or self._eager_buffer.shape[0] < batch:
                self._eager_buffer = self._new_input(batch)
            return self._eager_buffer[:batch]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) windows (any device/dtype; moved and cast) -> (B, classes) float32 logits
        on the device, owned by the caller."""
        if x.ndim != 5 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"expected input of shape (B, {', '.join(map(str, self.input_shape))}), "
                             f"got {tuple(x.shape)}")
        batch = int(x.shape[0])
        with self._lock, torch.no_grad():
            entry = self._graph(batch) if batch > 0 else None
            if entry is None:
                out = self._fn(x.to(device=self.device, dtype=self.dtype, non_blocking=True))
                return out.float()
            if x.data_ptr() != entry.static_in.data_ptr() or x.dtype != self.dtype:
                entry.static_in[:batch].copy_(x, non_blocking=True)
            entry.graph.replay()
            return entry.static_out[:batch].to(torch.float32, copy=True)

    __call__ = logits

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities (B, classes), float32, on the device."""
        return torch.softmax(self.logits(x), dim=-1)

    def predict(self, x: torch.Tensor) -> np.ndarray:
        """Softmax probabilities as a float32 numpy array on the host."""
        return self.probs(x).cpu().numpy().astype(np.float32, copy=False)

    def warmup(self, batch_sizes: Iterable[int] = (1,)) -> None:
        """Run every batch size once (compiling and capturing graphs now, not on the first window)."""
        for batch in batch_sizes:
            x = self.input_buffer(int(batch))
            x.zero_()
            self.logits(x)
        if self.device.type == "cuda":
            device_synchronize(self.device)


def _module_dtype(module: nn.Module) -> torch.dtype:
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32
