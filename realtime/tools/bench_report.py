"""``realtime bench``'s result as a table for people and as JSON for programs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

def _fmt(value: Optional[float], spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def format_table(result: dict[str, Any]) -> str:
    """The human-readable report of a :func:`run_bench` result."""
    ref, ours, ratios = result["reference"], result["ours"], result["ratios"]
    win, frames = result["window"], result["frames"]
    lines = [
        f"realtime bench: {result['model']} on {result['device']} ({result['device_name']}), "
        f"torch {result['torch']}, transformers {result['transformers']}, {result['cpu_threads']} CPU threads",
        f"frames {frames['width']}x{frames['height']} synthetic at {frames['fps']:g} fps; window "
        f"{win['num_frames']} frames {tuple(win['input_shape'])}; stride {win['stride_seconds']:g} s "
        f"= {win['new_frames']} new frames per window",
        f"GFLOPs per window: {result['gflops_per_window']:.1f}",
        f"reference: {ref['processor']} (cpu) + model {ref['dtype']} attn={ref['attn']} on {ref['model_device']}",
        f"ours:      {ours['preprocess']} + FastModel {ours['dtype']} attn={ours['attn']} "
        f"({ours.get('sdpa_backend', 'auto')} kernel) "
        f"cuda_graphs={ours['cuda_graphs']} compile={ours['compile']}; "
        f"{ours['preprocess_ms_per_frame']:.2f} ms per frame",
        "",
        f"{'path':<10} {'batch':>5} {'prep ms':>9} {'model ms':>9} {'p50 ms':>9} {'p99 ms':>9} "
        f"{'win/s e2e':>10} {'win/s model':>11} {'TFLOP/s':>8}",
    ]
    lat = ref["latency_ms"]
    lines.append(f"{'reference':<10} {1:>5} {ref['preprocess_ms']:>9.1f} {ref['forward_ms']:>9.1f} "
                 f"{lat['p50']:>9.1f} {lat['p99']:>9.1f} {ref['windows_per_s']:>10.2f} "
                 f"{ref['model_windows_per_s']:>11.2f} {ref['tflops']:>8.3f}")
    for entry in ours["throughput"]:
        lat_o = ours["latency_ms"] if entry["batch"] == 1 else {}
        lines.append(f"{'ours':<10} {entry['batch']:>5} {entry['preprocess_ms']:>9.1f} {entry['forward_ms']:>9.1f} "
                     f"{_fmt(lat_o.get('p50')):>9} {_fmt(lat_o.get('p99')):>9} "
                     f"{entry['end_to_end_windows_per_s']:>10.2f} {entry['model_windows_per_s']:>11.2f} "
                     f"{entry['tflops']:>8.3f}")
    lines.append("")
    parts = [f"latency p50 {ratios['latency_p50']:.3f}x ({1 / ratios['latency_p50']:.1f}x faster), "
             f"p99 {ratios['latency_p99']:.3f}x"]
    parts.append(f"windows/s end to end {ratios['windows_per_s_best']:.2f}x (batch "
                 f"{ratios['windows_per_s_best_batch']}), model only {ratios['model_windows_per_s_best']:.2f}x "
                 f"(batch {ratios['model_windows_per_s_best_batch']})")
    lines.append("ours/reference: " + "; ".join(parts))
    live = ours["latency_newest_frame_ms"]
    lines.append(f"live camera (earlier frames prepared as they arrived; the newest frame + window + model, "
                 f"batch 1): p50 {live['p50']:.2f} ms, p99 {live['p99']:.2f} ms "
                 f"({1 / ratios['latency_newest_frame_p50']:.1f}x faster than the reference)")
    lines.append(f"({ref['latency_ms']['n']} timed windows per row; {result['convention']})")
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
