"""``realtime bench``: our streaming path against the textbook ``transformers`` path.

One run times two ways of classifying windows of synthetic 1280x720 (``--frames``)
video with the same weights:

reference
    The code of the ``transformers`` documentation: the model's image processor
    (``VideoMAEImageProcessor``) on the CPU turns the window's frames (RGB, as a
    list) into ``pixel_values``; the model runs in float32 with eager attention at
    batch 1 on the bench device; ``softmax`` and the result back on the host. Every
    window processes all of its frames.
ours
    Per-frame preprocessing as the pipeline does it (:func:`realtime.core.preprocess.prepare_frame`
    on the CPU, :class:`realtime.accel.device_ring.DeviceFrameRing` on CUDA), window assembly from
    the ring, and :class:`realtime.accel.fast_model.FastModel` (bf16/fp16 on CUDA, SDPA, CUDA
    graphs). Streaming: a frame is prepared once, when it arrives, so a window costs
    only the frames captured since the previous one, ``round(stride * fps)`` (15 at
    the default 0.5 s stride and 30 fps), not ``num_frames``.

Reported: per-window latency p50/p99 at batch 1 (preprocessing included), windows/s
per batch size (model only, and end to end with every window's new frames prepared
in the same thread), GFLOPs per window (``FlopCounterMode`` on one reference forward;
a multiply-add counts 2) with the achieved TFLOP/s, and ours/reference ratios.

``--model``: a local ``transformers`` checkpoint directory, ``i3d-kinetics400``, or
``videomae-{tiny,small,base}-random`` (the VideoMAE architectures with random weights
built from a config in code, so no download is needed). I3D has no ``transformers``
processor; its reference is ``VideoMAEImageProcessor`` configured to I3D's input
(short side 256, crop 224, ``x / 127.5 - 1``) and the same float32 network.
"""

from __future__ import annotations

import copy
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from realtime.core.errors import ConfigError
from realtime.core.preprocess import normalize, prepare_frame
from realtime.core.types import InputSpec
from realtime.tools.bench_measure import count_gflops, device_name, latency_stats, sync_device, synthetic_frames

logger = logging.getLogger(__name__)

SCHEMA = "realtime.tools.bench/1"
I3D_MODEL = "i3d-kinetics400"
RANDOM_VIDEOMAE: dict[str, dict[str, int]] = {
    "videomae-tiny-random": dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
    "videomae-small-random": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                                  intermediate_size=1536),
    "videomae-base-random": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                 intermediate_size=3072),
}
"""Random-weight VideoMAE models by name: encoder sizes of the published S and B models (and a tiny one)."""

FRAME_SIZES: dict[str, tuple[int, int]] = {
    "360p": (640, 360), "480p": (854, 480), "540p": (960, 540), "720p": (1280, 720),
    "1080p": (1920, 1080), "1440p": (2560, 1440), "2160p": (3840, 2160), "4k": (3840, 2160),
}
"""``--frames`` names -> (width, height)."""

CPU_BATCHES: tuple[int, ...] = (1, 2)
CUDA_BATCHES: tuple[int, ...] = (1, 8, 32, 64)
_IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)


def parse_frames(text: str) -> tuple[int, int]:
    """``"720p"`` / ``"1080p"`` / ``"1280x720"`` -> (width, height)."""
    key = text.strip().lower()
    if key in FRAME_SIZES:
        return FRAME_SIZES[key]
    match = re.fullmatch(r"(\d+)\s*[x*]\s*(\d+)", key)
    if not match:
        raise ValueError(f"frame size {text!r}: use one of {', '.join(FRAME_SIZES)} or WIDTHxHEIGHT")
    width, height = int(match.group(1)), int(match.group(2))
    if width < 16 or height < 16:
        raise ValueError(f"frame size {text!r} is too small")
    return width, height


def parse_batches(text: str) -> tuple[int, ...]:
    """``"1,8,32"`` -> (1, 8, 32)."""
    try:
        batches = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(f"batch sizes {text!r}: expected comma-separated integers") from exc
    if not batches or any(b < 1 for b in batches):
        raise ValueError(f"batch sizes {text!r} must be positive integers")
    return tuple(sorted(set(batches)))


@dataclass
class BenchOptions:
    """What ``realtime bench`` measures; None fields take device-dependent defaults."""

    model: str = "videomae-base-random"
    device: str = "auto"
    dtype: str = "auto"
    batches: Optional[Sequence[int]] = None       # default (1, 2) on CPU, (1, 8, 32, 64) on CUDA
    repeats: Optional[int] = None                 # default 3 on CPU, 30 on CUDA
    warmup: Optional[int] = None                  # default 1 on CPU, 3 on CUDA
    frames: tuple[int, int] = (1280, 720)         # (width, height)
    fps: float = 30.0
    stride: float = 0.5
    cuda_graphs: Optional[bool] = None            # default: on for CUDA
    preprocess: str = "auto"                      # "auto" (device ring on CUDA), "cpu" or "device"
    compile: bool = False
    sdpa_backend: str = "auto"                    # ours: which attention kernel (models.fast.SDPA_BACKENDS)
    seed: int = 0


@dataclass
class _Subject:
    """One model as both paths need it."""

    name: str
    kind: str                                     # "hf" or "i3d"
    reference_model: nn.Module                    # float32, eager attention, on the bench device
    ours_module: nn.Module
    ours_forward: Callable[[nn.Module], Callable[[torch.Tensor], torch.Tensor]]
    spec: InputSpec
    num_frames: int
    processor: Any
    num_labels: int
    info: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- models


def random_videomae(name: str, seed: int) -> tuple[nn.Module, Any]:
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification, VideoMAEImageProcessor

    config = VideoMAEConfig(image_size=224, patch_size=16, tubelet_size=2, num_frames=16, num_channels=3,
                            use_mean_pooling=True, num_labels=400, **RANDOM_VIDEOMAE[name])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VideoMAEForVideoClassification(config).eval()
    processor = VideoMAEImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224},
                                       image_mean=list(_IMAGENET_DEFAULT_MEAN), image_std=list(_IMAGENET_DEFAULT_STD))
    return model, processor


def saved_model(model: str, workdir: Path) -> str:
    """``model`` as :func:`realtime.models.create_classifier` takes it: a random VideoMAE name
    (:data:`RANDOM_VIDEOMAE`) is saved into ``workdir`` first (fixed seed); others are returned as is."""
    if model not in RANDOM_VIDEOMAE:
        return model
    network, processor = random_videomae(model, seed=0)
    network.save_pretrained(workdir / model)
    processor.save_pretrained(workdir / model)
    return str(workdir / model)


def _load_subject(opts: BenchOptions, device: torch.device, dtype: torch.dtype) -> _Subject:
    from realtime.accel.fast_model import hf_forward, i3d_forward
    from realtime.models.hf_inputs import input_spec_from_processor

    name = opts.model
    if name == I3D_MODEL:
        from transformers import VideoMAEImageProcessor

        from realtime.models.i3d import INPUT_SPEC, InceptionI3d, kinetics400_labels
        from realtime.models.i3d_weights import read_weights, weights_path

        network = InceptionI3d(len(kinetics400_labels()))
        network.load_flax(read_weights(weights_path(None, download=True)))
        network.eval().requires_grad_(False)
        reference = network.to(device, memory_format=torch.channels_last_3d)
        ours = reference if (device.type == "cpu" and dtype == torch.float32) else copy.deepcopy(reference)
        processor = VideoMAEImageProcessor(size={"shortest_edge": INPUT_SPEC.resize_short},
                                           crop_size={"height": 224, "width": 224},
                                           image_mean=[0.5] * 3, image_std=[0.5] * 3)
        return _Subject(name, "i3d", reference, ours, i3d_forward, INPUT_SPEC, 32, processor, 400,
                        {"window": "32 consecutive frames (I3D default)"})

    if name in RANDOM_VIDEOMAE:
        model, processor = random_videomae(name, opts.seed)
        spec = input_spec_from_processor(processor.to_dict(), "videomae", 224)
        ours_module = copy.deepcopy(model)
        reference = model
        num_frames = int(model.config.num_frames)
        num_labels = int(model.config.num_labels)
        info = {"weights": "random (config in code)"}
    else:
        path = Path(name).expanduser()
        if not (path / "config.json").is_file():
            raise ConfigError(f"--model {name!r}: not {I3D_MODEL}, not one of {', '.join(RANDOM_VIDEOMAE)}, "
                             f"and not a local transformers checkpoint directory (no config.json)")
        from transformers import AutoImageProcessor, AutoModelForVideoClassification, VideoMAEImageProcessor

        from realtime.models.hf import HFVideoClassifier

        ours_clf = HFVideoClassifier(str(path), device="cpu", dtype="float32", attn="sdpa")
        ours_clf.load()
        ours_module = ours_clf.model
        spec = ours_clf.input_spec
        num_frames = ours_clf.num_frames
        num_labels = len(ours_clf.labels)
        # The documentation's code, as is.
        reference = AutoModelForVideoClassification.from_pretrained(str(path), attn_implementation="eager",
                                                                    dtype=torch.float32).eval()
        try:
            processor = AutoImageProcessor.from_pretrained(str(path))
        except (OSError, ValueError):
            logger.warning("%s has no image processor config; the reference uses VideoMAEImageProcessor with "
                           "the settings the pipeline inferred", path)
            processor = VideoMAEImageProcessor(**ours_clf.processor_settings)
        info = {"weights": str(path)}
    if getattr(reference.config, "_attn_implementation", "eager") != "eager":
        reference.set_attn_implementation("eager")
    reference.to(device)   # textbook .to(device): plain tensor attributes stay where they are
    return _Subject(name, "hf", reference, ours_module, hf_forward, spec, num_frames, processor, num_labels, info)


# --------------------------------------------------------------------------- the two paths


def _run_reference(subject: _Subject, frames_rgb: list[np.ndarray], device: torch.device,
                   repeats: int, warmup: int) -> tuple[dict[str, Any], float]:
    """The documentation's path at batch 1. Returns (results, GFLOPs per window)."""
    model, processor = subject.reference_model, subject.processor
    t = subject.num_frames
    clips = [[frames_rgb[(start + k) % len(frames_rgb)] for k in range(t)] for start in range(len(frames_rgb))]

    def window(i: int) -> tuple[float, float]:
        t0 = time.perf_counter()
        inputs = processor(clips[i % len(clips)], return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(device)
        t1 = time.perf_counter()
        with torch.no_grad():
            if subject.kind == "i3d":
                logits = model(pixel_values.permute(0, 2, 1, 3, 4))
            else:
                logits = model(pixel_values=pixel_values).logits
            logits.softmax(-1).cpu()
        t2 = time.perf_counter()
        return (t1 - t0) * 1e3, (t2 - t1) * 1e3

    # The first forward doubles as warm-up and FLOP count.
    inputs = processor(clips[0], return_tensors="pt")
    pixel_values = inputs["pixel_values"].to(device)
    with torch.no_grad():
        if subject.kind == "i3d":
            gflops = count_gflops(lambda: model(pixel_values.permute(0, 2, 1, 3, 4)), device)
        else:
            gflops = count_gflops(lambda: model(pixel_values=pixel_values), device)
    for i in range(max(0, warmup - 1)):
        window(i)
    prep, fwd = [], []
    for i in range(repeats):
        p, f = window(i)
        prep.append(p)
        fwd.append(f)
    total = [p + f for p, f in zip(prep, fwd)]
    stats = latency_stats(total)
    forward_ms = float(np.median(fwd))
    result = {
        "processor": type(processor).__name__, "processor_device": "cpu", "model_device": str(device),
        "dtype": "float32", "attn": "eager" if subject.kind == "hf" else "n/a", "batch": 1,
        "frames_per_window": t, "latency_ms": stats,
        "preprocess_ms": float(np.median(prep)), "forward_ms": forward_ms,
        "windows_per_s": 1e3 / stats["p50"], "model_windows_per_s": 1e3 / forward_ms,
        "tflops": gflops * (1e3 / forward_ms) / 1e3,
    }
    return result, gflops


class _OursCPU:
    """The CPU pipeline's path: prepare_frame per new frame into a uint8 ring, np.take, normalize."""

    def __init__(self, subject: _Subject, capacity: int) -> None:
        self.subject = subject
        h, w = subject.spec.crop
        self.ring = np.zeros((capacity, h, w, 3), np.uint8)
        self.capacity = capacity
        self.head = 0
        self.description = f"CPU prepare_frame ({subject.spec.interpolation}) + numpy normalize per window"

    def put(self, bgr: np.ndarray) -> int:
        slot = self.head
        prepare_frame(bgr, self.subject.spec, out=self.ring[slot])
        self.head = (self.head + 1) % self.capacity
        return slot

    def assemble(self, slots: np.ndarray, fast: Any) -> torch.Tensor:
        clips = np.take(self.ring, slots, axis=0)                               # (B, T, H, W, 3)
        x = torch.from_numpy(normalize(clips, self.subject.spec)).permute(0, 1, 4, 2, 3)
        # What the backends do: HF makes (B, T, C, H, W) contiguous; I3D keeps the channels-last view.
        return x.contiguous() if self.subject.kind == "hf" else x


class _OursDevice:
    """The device path: DeviceFrameRing.push per new frame, gather into the model's input buffer."""

    def __init__(self, subject: _Subject, capacity: int, device: torch.device, dtype: torch.dtype) -> None:
        from realtime.accel.device_ring import DeviceFrameRing

        self.ring = DeviceFrameRing(capacity, subject.spec, device, dtype)
        self.description = f"device DeviceFrameRing ({subject.spec.interpolation}, {self.ring.device})"

    def put(self, bgr: np.ndarray) -> int:
        return self.ring.push(bgr)

    def assemble(self, slots: np.ndarray, fast: Any) -> torch.Tensor:
        buffer = fast.input_buffer(slots.shape[0])
        self.ring.gather(slots, out=buffer)
        return buffer


def _run_ours(subject: _Subject, frames_bgr: list[np.ndarray], device: torch.device, dtype: torch.dtype,
              opts: BenchOptions, batches: Sequence[int], repeats: int, warmup: int,
              new_frames: int) -> dict[str, Any]:
    from realtime.accel.resample import supports
    from realtime.accel.fast_model import FastModel

    t = subject.num_frames
    h, w = subject.spec.crop
    fast = FastModel(subject.ours_module, subject.ours_forward(subject.ours_module), (t, 3, h, w),
                     device=device, dtype=dtype, sdpa=True, cuda_graphs=opts.cuda_graphs,
                     compile=opts.compile, sdpa_backend=opts.sdpa_backend if subject.kind == "hf" else "auto")
    capacity = max(t, new_frames) * 2 + 2
    path: Any
    use_device = opts.preprocess == "device" or (opts.preprocess == "auto" and device.type == "cuda")
    if use_device and not supports(subject.spec):
        logger.warning("%s interpolation has no device implementation; preprocessing on the CPU",
                       subject.spec.interpolation)
        use_device = False
    path = _OursDevice(subject, capacity, device, dtype) if use_device else _OursCPU(subject, capacity)
    for i in range(capacity):                       # fill the ring once
        path.put(frames_bgr[i % len(frames_bgr)])
    sync_device(device)
    started = time.perf_counter()
    fast.warmup(batches)
    warmup_s = time.perf_counter() - started

    # Per-frame preprocessing cost on its own.
    per_frame = []
    for i in range(max(8, new_frames)):
        t0 = time.perf_counter()
        path.put(frames_bgr[i % len(frames_bgr)])
        sync_device(device)
        per_frame.append((time.perf_counter() - t0) * 1e3)

    frame_i = 0
    throughput: list[dict[str, Any]] = []
    latency: dict[str, float] = {}
    for batch in batches:
        prep, fwd, total = [], [], []
        for r in range(warmup + repeats):
            sync_device(device)
            t0 = time.perf_counter()
            last: list[int] = []
            for _ in range(batch * new_frames):     # every window of the batch brings its new frames
                last.append(path.put(frames_bgr[frame_i % len(frames_bgr)]))
                frame_i += 1
            t1 = time.perf_counter()
            newest = last[-1]
            window = [(newest - (t - 1 - k)) % capacity for k in range(t)]
            slots = np.asarray([window] * batch, dtype=np.int64)
            x = path.assemble(slots, fast)
            fast.probs(x).cpu()                     # host has the probabilities: includes the sync
            t2 = time.perf_counter()
            if r >= warmup:
                prep.append((t1 - t0) * 1e3)
                fwd.append((t2 - t1) * 1e3)
                total.append((t2 - t0) * 1e3)
        forward_ms = float(np.median(fwd))
        entry = {"batch": batch, "preprocess_ms": float(np.median(prep)), "forward_ms": forward_ms,
                 "total_ms": float(np.median(total)), "model_windows_per_s": batch * 1e3 / forward_ms,
                 "end_to_end_windows_per_s": batch * 1e3 / float(np.median(total))}
        throughput.append(entry)
        if batch == 1:
            latency = latency_stats(total)
    # A live camera's latency: its earlier frames were prepared as they arrived (by the capture
    # thread), so what stands between the newest frame and its label is that frame, the window's
    # assembly and the model.
    newest_frame = []
    for r in range(warmup + repeats):
        sync_device(device)
        t0 = time.perf_counter()
        newest = path.put(frames_bgr[frame_i % len(frames_bgr)])
        frame_i += 1
        slots = np.asarray([[(newest - (t - 1 - k)) % capacity for k in range(t)]], dtype=np.int64)
        fast.probs(path.assemble(slots, fast)).cpu()
        if r >= warmup:
            newest_frame.append((time.perf_counter() - t0) * 1e3)
    return {
        "latency_newest_frame_ms": latency_stats(newest_frame),
        "preprocess": path.description, "dtype": str(fast.dtype).removeprefix("torch."), "attn": fast.attn,
        "sdpa_backend": fast.sdpa_backend,
        "cuda_graphs": fast.cuda_graphs, "compile": fast.compiled, "captured_batches": list(fast.captured_batches),
        "moved_plain_tensors": fast.moved_attributes, "warmup_s": warmup_s,
        "frames_per_window": new_frames, "preprocess_ms_per_frame": float(np.median(per_frame)),
        "latency_ms": latency, "throughput": throughput,
    }


# --------------------------------------------------------------------------- driver


def run_bench(opts: BenchOptions) -> dict[str, Any]:
    """Run both paths; the result dict is what ``--json`` writes (see :func:`format_table`)."""
    from realtime.accel.device import resolve_device, resolve_dtype

    try:
        device = resolve_device(opts.device)
        dtype = resolve_dtype(opts.dtype, device)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"--device {opts.device!r} / --dtype {opts.dtype!r}: {exc}") from exc
    assert dtype is not None
    cuda = device.type == "cuda"
    batches = tuple(opts.batches) if opts.batches else (CUDA_BATCHES if cuda else CPU_BATCHES)
    batches = tuple(sorted(set(batches) | {1}))      # batch 1 always: it gives the latency
    repeats = opts.repeats if opts.repeats is not None else (30 if cuda else 3)
    warmup = opts.warmup if opts.warmup is not None else (3 if cuda else 1)
    if repeats < 1:
        raise ConfigError(f"repeats must be >= 1, got {repeats}")
    if opts.stride <= 0 or opts.fps <= 0:
        raise ConfigError("stride and fps must be > 0")
    if opts.preprocess not in ("auto", "cpu", "device"):
        raise ConfigError(f"preprocess must be auto, cpu or device, got {opts.preprocess!r}")
    new_frames = max(1, int(round(opts.stride * opts.fps)))
    width, height = opts.frames

    logger.info("bench %s on %s (%s): batches %s, %d repeats", opts.model, device, dtype, batches, repeats)
    subject = _load_subject(opts, device, dtype)
    frames_bgr = synthetic_frames(max(16, subject.num_frames), width, height, opts.seed)
    frames_rgb = [np.ascontiguousarray(f[:, :, ::-1]) for f in frames_bgr]   # decoders hand the docs' code RGB

    reference, gflops = _run_reference(subject, frames_rgb, device, repeats, warmup)
    subject.reference_model = None  # type: ignore[assignment]  # free it before ours runs
    ours = _run_ours(subject, frames_bgr, device, dtype, opts, batches, repeats, warmup, new_frames)
    for entry in ours["throughput"]:
        entry["tflops"] = gflops * entry["model_windows_per_s"] / 1e3

    best = max(ours["throughput"], key=lambda e: e["end_to_end_windows_per_s"])
    best_model = max(ours["throughput"], key=lambda e: e["model_windows_per_s"])
    first = ours["throughput"][0]
    ratios: dict[str, Any] = {
        "latency_p50": ours["latency_ms"]["p50"] / reference["latency_ms"]["p50"],
        "latency_p99": ours["latency_ms"]["p99"] / reference["latency_ms"]["p99"],
        "latency_newest_frame_p50": ours["latency_newest_frame_ms"]["p50"] / reference["latency_ms"]["p50"],
        f"windows_per_s_batch{first['batch']}": first["end_to_end_windows_per_s"] / reference["windows_per_s"],
        "windows_per_s_best": best["end_to_end_windows_per_s"] / reference["windows_per_s"],
        "windows_per_s_best_batch": best["batch"],
        f"model_windows_per_s_batch{first['batch']}": first["model_windows_per_s"] / reference["model_windows_per_s"],
        "model_windows_per_s_best": best_model["model_windows_per_s"] / reference["model_windows_per_s"],
        "model_windows_per_s_best_batch": best_model["batch"],
    }
    import transformers

    return {
        "schema": SCHEMA,
        "model": subject.name, "model_kind": subject.kind, "num_labels": subject.num_labels, **subject.info,
        "device": str(device), "device_name": device_name(device), "torch": torch.__version__,
        "transformers": transformers.__version__, "cpu_threads": torch.get_num_threads(),
        "frames": {"width": width, "height": height, "fps": opts.fps, "synthetic": True},
        "window": {"num_frames": subject.num_frames, "input_shape": [subject.num_frames, 3, *subject.spec.crop],
                   "stride_seconds": opts.stride, "new_frames": new_frames},
        "convention": (
            f"latency = first frame handed to preprocessing -> probabilities on the host, batch 1. "
            f"Reference: the image processor prepares all {subject.num_frames} frames of every window. "
            f"Ours (streaming): each frame is prepared once on arrival, so a window costs the "
            f"{new_frames} frames captured since the previous one (stride {opts.stride:g} s x {opts.fps:g} fps) "
            f"plus window assembly and the model. windows/s (from medians): model = B / (assembly + forward + "
            f"softmax + copy to host); end to end = B / (that + preparing B x {new_frames} new frames in the "
            f"same thread); the reference's = 1 / its p50 latency. "
            f"GFLOPs: FlopCounterMode on one batch-1 reference forward (multiply-add = 2). "
            f"Ratios are ours / reference (latency: < 1 is better; windows/s: > 1 is better)."),
        "gflops_per_window": gflops,
        "reference": reference,
        "ours": ours,
        "ratios": ratios,
    }
