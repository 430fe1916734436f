"""``realtime bench`` end to end on CPU with a tiny model, and its argument parsing."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from realtime.tools.bench import BenchOptions, parse_batches, parse_frames, run_bench
from realtime.tools.bench_measure import latency_stats
from realtime.tools.bench_report import format_table
from realtime.cli.bench import add_parser
from realtime.core.errors import ConfigError

try:
    from tests.support.tiny_models import make_tiny_videomae
except ImportError:  # run with tests/ (not the repository root) on sys.path
    from support.tiny_models import make_tiny_videomae


def bench_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="realtime")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["bench", *argv])


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_videomae(tmp_path_factory.mktemp("bench") / "tiny-videomae")


def test_bench_end_to_end_writes_json(tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    args = bench_args("--model", str(tiny_dir), "--device", "cpu", "--batch", "2", "--repeats", "2",
                      "--warmup", "0", "--frames", "320x240", "--json", str(out))
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "ours/reference" in printed and "reference" in printed and f"wrote {out}" in printed

    result = json.loads(out.read_text())
    assert result["schema"] == "realtime.tools.bench/1"
    assert result["device"] == "cpu" and result["model_kind"] == "hf"
    assert result["frames"] == {"width": 320, "height": 240, "fps": 30.0, "synthetic": True}
    assert result["window"] == {"num_frames": 16, "input_shape": [16, 3, 32, 32], "stride_seconds": 0.5,
                                "new_frames": 15}
    assert "15 frames" in result["convention"]
    assert result["gflops_per_window"] > 0

    ref = result["reference"]
    assert ref["dtype"] == "float32" and ref["attn"] == "eager" and ref["batch"] == 1
    assert ref["processor"].startswith("VideoMAEImageProcessor") and ref["frames_per_window"] == 16
    assert set(ref["latency_ms"]) == {"p50", "p99", "mean", "min", "max", "n"} and ref["latency_ms"]["n"] == 2
    for key in ("preprocess_ms", "forward_ms", "windows_per_s", "model_windows_per_s", "tflops"):
        assert ref[key] > 0

    ours = result["ours"]
    assert ours["dtype"] == "float32" and ours["attn"] == "sdpa" and ours["cuda_graphs"] is False
    assert ours["frames_per_window"] == 15 and ours["preprocess_ms_per_frame"] > 0
    assert ours["moved_plain_tensors"] == []      # float32 on the CPU: the position table is already right
    assert ours["latency_ms"]["p99"] >= ours["latency_ms"]["p50"] > 0
    live = ours["latency_newest_frame_ms"]                  # one new frame + window + model
    assert live["n"] == 2 and live["p99"] >= live["p50"] > 0
    assert [e["batch"] for e in ours["throughput"]] == [1, 2]          # batch 1 always runs
    for entry in ours["throughput"]:
        for key in ("preprocess_ms", "forward_ms", "total_ms", "model_windows_per_s",
                    "end_to_end_windows_per_s", "tflops"):
            assert entry[key] > 0

    ratios = result["ratios"]
    for key in ("latency_p50", "latency_p99", "windows_per_s_batch1", "windows_per_s_best",
                "model_windows_per_s_batch1", "model_windows_per_s_best"):
        assert ratios[key] > 0
    assert ratios["latency_p50"] == pytest.approx(ours["latency_ms"]["p50"] / ref["latency_ms"]["p50"])
    assert ratios["windows_per_s_best_batch"] in (1, 2)
    assert ratios["latency_newest_frame_p50"] == pytest.approx(live["p50"] / ref["latency_ms"]["p50"])
    assert "live camera" in printed


def test_random_videomae_by_name_runs_without_files() -> None:
    result = run_bench(BenchOptions(model="videomae-tiny-random", device="cpu", batches=(1,), repeats=1,
                                    warmup=0, frames=(256, 224), stride=0.1))
    assert result["window"]["input_shape"] == [16, 3, 224, 224]
    assert result["window"]["new_frames"] == 3
    assert result["num_labels"] == 400 and result["weights"].startswith("random")
    # VideoMAE-tiny at 224: patch embedding + 1568 tokens x 1 layer, about 0.3 GFLOPs
    assert 0.05 < result["gflops_per_window"] < 2
    assert "ours" in format_table(result)


def test_device_ring_path_on_cpu_tensors(tiny_dir: Path) -> None:
    """Ours through realtime.accel.device_ring.DeviceFrameRing (what CUDA runs), here on the CPU."""
    result = run_bench(BenchOptions(model=str(tiny_dir), device="cpu", batches=(1, 3), repeats=1, warmup=0,
                                    frames=(320, 240), preprocess="device", sdpa_backend="math"))
    assert result["ours"]["preprocess"].startswith("device DeviceFrameRing")
    assert result["ours"]["sdpa_backend"] == "math" and result["ours"]["attn"] == "sdpa"
    assert [e["batch"] for e in result["ours"]["throughput"]] == [1, 3]


def test_parsing() -> None:
    assert parse_frames("720p") == (1280, 720)
    assert parse_frames("1080P") == (1920, 1080)
    assert parse_frames("640x360") == (640, 360)
    with pytest.raises(ValueError):
        parse_frames("huge")
    assert parse_batches("8,1, 32,8") == (1, 8, 32)
    for bad in ("", "0", "a,b"):
        with pytest.raises(ValueError):
            parse_batches(bad)
    stats = latency_stats([1.0, 2.0, 3.0, 4.0])
    assert stats["p50"] == 2.5 and stats["n"] == 4 and 3.9 < stats["p99"] <= 4.0


def test_bad_arguments_are_config_errors(tmp_path: Path) -> None:
    for argv in (["--frames", "huge"], ["--batch", "0"], ["--repeats", "0"], ["--stride", "0"]):
        args = bench_args(*argv)
        with pytest.raises(ConfigError):
            args.func(args)
    args = bench_args("--model", str(tmp_path / "missing"), "--device", "cpu")
    with pytest.raises(ConfigError, match="not i3d-kinetics400"):
        args.func(args)


def test_stream_bench_serves_every_stream(tmp_path):
    """Several live synthetic cameras through the real pipeline: each stream gets its windows."""
    from realtime.tools.stream_bench import format_stream_result, run_stream_bench
    r = run_stream_bench("videomae-tiny-random", "cpu", streams=3, seconds=3.0, fps=30.0,
                         frame_size=(160, 120), stride=0.5, max_batch=8, max_wait_ms=20,
                         sampled_frames_only=True)
    rate = r["windows_per_second_per_stream"]
    assert r["starved_streams"] == 0, r
    assert rate["min"] >= 0.5 * rate["target"] and rate["max"] <= 1.5 * rate["target"], r
    assert r["mean_batch"] > 1.0, r                       # streams were batched together
    assert r["newest_frame_age_ms"]["p99"] < 1000, r
    phases = r["inference_ms_per_window"]
    assert set(phases) == {"collect", "wait", "gather", "model", "emit"}, r
    assert phases["model"] > 0 and phases["gather"] == 0, r      # CPU path: windows are gathered on the host
    assert phases["wait"] > 0, r                                  # max_wait_ms let batches fill
    assert 0 < r["inference_busy"] <= 1.05, r
    cores = r["cpu_cores"]
    assert {"capture", "inference", "process"} <= set(cores), r   # Linux knows each thread's CPU time
    assert 0 < cores["inference"] <= cores["process"] and 0 < cores["capture"] <= cores["process"], r
    # VideoMAE-Kinetics samples every 4th frame of 30 fps video: a quarter were prepared.
    assert r["sampled_frames_only"] and 0.2 <= r["frames_prepared"] <= 0.3, r
    text = format_stream_result(r)
    assert "3 streams" in text and "inference thread per window" in text and "CPU cores used" in text
