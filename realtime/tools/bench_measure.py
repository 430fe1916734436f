"""What ``realtime bench`` measures with: synthetic frames, device syncs, latency percentiles, FLOPs."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

def synthetic_frames(count: int, width: int, height: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` distinct BGR uint8 frames: moving gradients plus noise (content does not change timings)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 255 // max(1, width - 1)), (yy * 255 // max(1, height - 1)),
                     ((xx + yy) * 255 // max(1, width + height - 2))], axis=-1).astype(np.int32)
    frames = []
    for i in range(count):
        noise = rng.integers(0, 48, (height, width, 3), dtype=np.int32)
        frames.append(((base + noise + 9 * i) % 256).astype(np.uint8))
    return frames


def sync_device(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def latency_stats(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50, p99 (linear interpolation between samples), mean, min, max and n of ``samples_ms``."""
    a = np.asarray(samples_ms, dtype=np.float64)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "mean": float(a.mean()),
            "min": float(a.min()), "max": float(a.max()), "n": int(a.size)}


def count_gflops(run: Callable[[], Any], device: torch.device) -> float:
    """GFLOPs of ``run()`` (one forward) by ``FlopCounterMode``; oneDNN is switched off meanwhile so
    every convolution goes through the counted ``aten.convolution``."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    mkldnn = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        with counter:
            run()
        sync_device(device)
    finally:
        torch.backends.mkldnn.enabled = mkldnn
    return counter.get_total_flops() / 1e9


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"
