"""dtype "auto" on the CPU: bfloat16 where the CPU computes it natively, float32 elsewhere."""

from __future__ import annotations

import logging

import pytest
import torch

from realtime.accel import device as dev
from realtime.accel.device import DeviceError, cpu_bf16, resolve_dtype


@pytest.mark.parametrize("forced,expected", [("1", torch.bfloat16), ("0", torch.float32)])
def test_auto_follows_the_cpus_bfloat16_and_says_why(monkeypatch, caplog, forced, expected) -> None:
    monkeypatch.setenv(dev.CPU_BF16_ENV, forced)
    with caplog.at_level(logging.INFO, logger="realtime.accel.device"):
        assert resolve_dtype("auto", "cpu") == expected
    assert f"dtype auto on cpu: {str(expected).removeprefix('torch.')} (REALTIME_CPU_BF16={forced})" in caplog.text
    assert resolve_dtype("float32", "cpu") == torch.float32          # explicit choices stay


def test_the_detection_reads_the_cpu_flags(monkeypatch) -> None:
    monkeypatch.delenv(dev.CPU_BF16_ENV, raising=False)
    for flags, native in [({"avx2", "avx512_bf16"}, True), ({"amx_bf16", "avx512f"}, True),
                          ({"avx2", "avx512f", "avx512_vnni"}, False)]:
        monkeypatch.setattr(dev, "_cpu_flags", lambda flags=flags: flags)
        dev._detected_cpu_bf16.cache_clear()
        got, why = cpu_bf16()
        assert got is native and (("has avx512_bf16" in why or "has amx_bf16" in why) if native
                                  else "neither amx_bf16 nor avx512_bf16" in why)
    dev._detected_cpu_bf16.cache_clear()


def test_bfloat16_where_it_cannot_run_is_refused_up_front(monkeypatch) -> None:
    """The probe's answer is the seam: no CPU here lacks bfloat16 kernels."""
    monkeypatch.setenv(dev.CPU_BF16_ENV, "0")
    monkeypatch.setattr(dev, "_cpu_bf16_failure", lambda: "mkldnn_convolution: bf16 path needs avx512bw")
    with pytest.raises(DeviceError, match=r"bfloat16 cannot run on this CPU \(REALTIME_CPU_BF16=0; "
                                          r"oneDNN: mkldnn_convolution: bf16 path needs avx512bw\)"):
        resolve_dtype("bfloat16", "cpu")


def test_bfloat16_without_native_support_runs_with_a_warning(monkeypatch, caplog) -> None:
    monkeypatch.setenv(dev.CPU_BF16_ENV, "0")
    with caplog.at_level(logging.WARNING, logger="realtime.accel.device"):
        assert resolve_dtype("bf16", "cpu") == torch.bfloat16
    assert "emulated and slower than float32" in caplog.text
