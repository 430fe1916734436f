"""``realtime bench``: time our streaming path against the textbook ``transformers`` path.

The measuring lives in :mod:`realtime.tools.bench`; this module only builds the command line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from realtime.cli.common import add_log_level, setup_logging
from realtime.core.errors import ConfigError
from realtime.core.types import ENGINES, SDPA_BACKENDS


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``bench`` command to ``realtime``'s subcommands."""
    p = subparsers.add_parser(
        "bench", help="time per-window latency and throughput against the transformers reference",
        description="Time the reference path (the transformers documentation's code: the model's image "
                    "processor on the CPU, float32, eager attention, batch 1) and ours (streaming per-frame "
                    "preprocessing, reduced precision, SDPA, CUDA graphs) on synthetic frames: latency "
                    "p50/p99 at batch 1, windows/s per batch size, GFLOPs per window, TFLOP/s, ratios.")
    p.add_argument("--model", "-m", default="videomae-base-random", metavar="M",
                   help="a local transformers checkpoint directory, i3d-kinetics400, or videomae-small-random / "
                        "videomae-base-random (random weights, no download; default videomae-base-random)")
    p.add_argument("--device", default="auto", metavar="D", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="auto", metavar="T",
                   help="our dtype: auto (bfloat16 on CUDA, float16 without bf16, float32 on CPU), "
                        "float32, bfloat16 or float16; the reference is always float32")
    p.add_argument("--batch", default=None, metavar="LIST",
                   help="comma-separated batch sizes (default 1,2 on CPU, 1,8,32,64 on CUDA; 1 is always run)")
    p.add_argument("--repeats", type=int, default=None, metavar="N",
                   help="timed windows per row (default 3 on CPU, 30 on CUDA)")
    p.add_argument("--warmup", type=int, default=None, metavar="N",
                   help="untimed runs before each row (default 1 on CPU, 3 on CUDA)")
    p.add_argument("--frames", default="720p", metavar="SIZE",
                   help="synthetic frame size: 480p, 720p (default), 1080p, ... or WIDTHxHEIGHT")
    p.add_argument("--fps", type=float, default=30.0, help="capture frame rate (default 30)")
    p.add_argument("--stride", type=float, default=0.5, metavar="SECONDS",
                   help="time between windows (default 0.5, the pipeline's default): ours prepares "
                        "stride x fps new frames per window")
    p.add_argument("--preprocess", choices=["auto", "cpu", "device"], default="auto",
                   help="our per-frame preprocessing: auto (the device ring on CUDA, prepare_frame on CPU), "
                        "cpu, or device (realtime.accel.device_ring.DeviceFrameRing, also on CPU tensors)")
    p.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false", default=None,
                   help="run our model eagerly on CUDA")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile our model (cache under ~/.cache/realtime/inductor)")
    p.add_argument("--sdpa-backend", choices=SDPA_BACKENDS, default="auto",
                   help="our attention kernel (transformers models; default auto: torch's choice)")
    p.add_argument("--streams", type=int, default=0, metavar="N",
                   help="instead: run N synthetic live cameras through the real pipeline and report "
                        "per-stream windows/s and newest-frame age (e.g. --streams 64 on a GPU)")
    p.add_argument("--seconds", type=float, default=20.0, help="with --streams: how long to run")
    p.add_argument("--max-batch", type=int, default=None,
                   help="with --streams: inference.max_batch (default: the pipeline's, 8)")
    p.add_argument("--max-wait-ms", type=float, default=None,
                   help="with --streams: inference.max_wait_ms (default: the pipeline's, 0)")
    p.add_argument("--every-frame", action="store_true",
                   help="with --streams: window.sampled_frames_only=false (prepare every captured frame, "
                        "not only those windows sample)")
    p.add_argument("--engine", metavar="LIST",
                   help="instead: time inference engines side by side on the CPU, e.g. --engine torch,openvino "
                        "(each with every --precision; torch float32 is always the first row); with --streams "
                        "one engine (default auto)")
    p.add_argument("--precision", metavar="LIST",
                   help="with --engine: any of float32, bfloat16, int8 (OpenVINO only, after realtime models "
                        "quantize); default float32,bfloat16 where the CPU has native bfloat16, else float32")
    p.add_argument("--clip", metavar="VIDEO",
                   help="with --engine: take the windows from this video (real frames, so the probability "
                        "differences mean something); default synthetic frames")
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    add_log_level(p, "warning")
    p.set_defaults(func=cmd_bench)
    return p


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark, print the table, write --json."""
    from realtime.tools.bench import BenchOptions, parse_batches, parse_frames, run_bench
    from realtime.tools.bench_report import format_table, write_json

    setup_logging(args.log_level)
    try:
        frames = parse_frames(args.frames)
        batches = parse_batches(args.batch) if args.batch else None
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if args.repeats is not None and args.repeats < 1:
        raise ConfigError(f"--repeats must be >= 1, got {args.repeats}")
    if args.warmup is not None and args.warmup < 0:
        raise ConfigError(f"--warmup must be >= 0, got {args.warmup}")
    if args.stride <= 0 or args.fps <= 0:
        raise ConfigError("--stride and --fps must be > 0")
    if args.streams:
        if args.engine and args.engine not in ENGINES:
            raise ConfigError(f"--engine {args.engine!r} with --streams: one of {', '.join(ENGINES)}")
        return _cmd_stream_bench(args, frames)
    if args.engine:
        return _cmd_engine_bench(args)
    opts = BenchOptions(model=args.model, device=args.device, dtype=args.dtype, batches=batches,
                        repeats=args.repeats, warmup=args.warmup, frames=frames, fps=args.fps,
                        stride=args.stride, cuda_graphs=args.cuda_graphs, preprocess=args.preprocess,
                        compile=args.compile, sdpa_backend=args.sdpa_backend)
    result = run_bench(opts)
    print(format_table(result), flush=True)
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}", flush=True)
    return 0


def _cmd_engine_bench(args: argparse.Namespace) -> int:
    from realtime.tools.bench_report import write_json
    from realtime.tools.engine_bench import format_engine_table, parse_rows, run_engine_bench

    if args.device not in ("auto", "cpu"):
        raise ConfigError(f"--engine compares engines on the CPU; --device {args.device} does not apply")
    if args.clip is not None and not Path(args.clip).is_file():
        raise ConfigError(f"--clip {args.clip}: no such file")
    result = run_engine_bench(args.model, parse_rows(args.engine, args.precision), clip=args.clip,
                              windows=args.repeats or 8, warmup=1 if args.warmup is None else args.warmup)
    print(format_engine_table(result), flush=True)
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}", flush=True)
    return 0


def _cmd_stream_bench(args: argparse.Namespace, frames: tuple[int, int]) -> int:
    import json

    from realtime.config import InferenceConfig
    from realtime.tools.stream_bench import format_stream_result, run_stream_bench

    defaults = InferenceConfig()
    if args.max_batch is None:
        args.max_batch = defaults.max_batch
    if args.max_wait_ms is None:
        args.max_wait_ms = defaults.max_wait_ms
    if args.streams < 1 or args.seconds <= 0 or args.max_batch < 1 or args.max_wait_ms < 0:
        raise ConfigError("--streams, --seconds and --max-batch must be > 0, --max-wait-ms >= 0")
    result = run_stream_bench(args.model, args.device, args.streams, args.seconds, args.fps, frames,
                              args.stride, args.max_batch, args.max_wait_ms, args.preprocess,
                              sampled_frames_only=not args.every_frame,
                              sdpa_backend=args.sdpa_backend, engine=args.engine or "auto")
    print(format_stream_result(result), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json}", flush=True)
    return 0
