"""Frames prepared on the model's device (the GPU path), exercised end to end on CPU tensors:
same windows, same probabilities as the OpenCV path."""

from __future__ import annotations

import pytest
import torch

from realtime.config import load_config
from realtime.models.hf import HFVideoClassifier
from realtime.stream.pipeline import Pipeline

from conftest import write_video
from support.tiny_models import make_tiny_videomae


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "tiny"
    make_tiny_videomae(path, labels=["a", "b", "c", "d", "e"])
    return path


def run(model_dir, video, preprocess):
    clf = HFVideoClassifier(str(model_dir), device="cpu")
    rows = []
    cfg = load_config(None, ["sinks=[]", "run.log_level=warning", f"source.uri={video}",
                             "source.pace=fast", "window.stride_seconds=0.5",
                             f"inference.preprocess={preprocess}"])
    p = Pipeline(cfg, classifier=clf, on_prediction=lambda pred, probs: rows.append((pred, probs)))
    p.run()
    return p, rows


def test_device_preprocessing_gives_the_same_predictions(tiny, tmp_path):
    video = write_video(tmp_path / "v.mp4", frames=120, fps=30.0, size=(96, 64),
                        color_of=lambda i: ((i * 5) % 256, (i * 11) % 256, 128))
    p_cpu, cpu = run(tiny, video, "cpu")
    p_dev, dev = run(tiny, video, "device")
    assert p_cpu.streams[0].slot.store.device is None
    assert p_dev.streams[0].slot.store.device is not None         # the torch path really ran
    assert len(cpu) == len(dev) >= 3
    for (pa, a), (pb, b) in zip(cpu, dev):
        assert pa.frame_indices == pb.frame_indices
        assert abs(a - b).max() < 1e-4, abs(a - b).max()


def test_auto_uses_the_cpu_path_on_a_cpu_model(tiny, tmp_path):
    video = write_video(tmp_path / "v.mp4", frames=70, fps=30.0)
    p, rows = run(tiny, video, "auto")
    assert p.streams[0].slot.store.device is None and rows


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_pipeline_matches_the_cpu_pipeline(tiny, tmp_path):  # pragma: no cover - GPU machines only
    """The whole GPU path (device ring on CUDA, bf16, CUDA graphs) against the CPU path in fp32."""
    video = write_video(tmp_path / "v.mp4", frames=120, fps=30.0, size=(320, 240),
                        color_of=lambda i: ((i * 5) % 256, (i * 11) % 256, 128))
    _, cpu = run(tiny, video, "cpu")
    rows = []
    clf = HFVideoClassifier(str(tiny), device="cuda")
    cfg = load_config(None, ["sinks=[]", "run.log_level=warning", f"source.uri={video}",
                             "source.pace=fast", "window.stride_seconds=0.5", "inference.preprocess=auto"])
    p = Pipeline(cfg, classifier=clf, on_prediction=lambda pred, probs: rows.append((pred, probs)))
    p.run()
    assert p.streams[0].slot.store.device is not None and clf.accelerator().cuda_graphs
    assert len(rows) == len(cpu) >= 3
    for (pa, a), (pb, b) in zip(cpu, rows):
        assert pa.frame_indices == pb.frame_indices
        assert abs(a - b).max() < 0.05, abs(a - b).max()          # bf16 against fp32
