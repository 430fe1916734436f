"""realtime.accel.fast_model: plain tensor attributes, the FastModel wrapper (eager on CPU), settings.

CUDA graphs and bf16 on CUDA run only where a GPU is present (tests at the end).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from realtime.accel.device import auto_dtype, resolve_dtype
from realtime.accel.fast_model import (
    FastModel,
    configure_compile_cache,
    hf_forward,
    i3d_forward,
    move_plain_tensors,
    plain_tensor_attributes,
    use_sdpa,
)

try:
    from tests.support.tiny_models import make_tiny_timesformer, make_videomae, videomae_config
except ImportError:  # run with tests/ (not the repository root) on sys.path
    from support.tiny_models import make_tiny_timesformer, make_videomae, videomae_config

FRAMES, SIZE = 16, 32
INPUT_SHAPE = (FRAMES, 3, SIZE, SIZE)


def tiny_videomae() -> nn.Module:
    return make_videomae(videomae_config("tiny", num_labels=5, image_size=SIZE, num_frames=FRAMES))


def windows(batch: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((batch, *INPUT_SHAPE)).astype(np.float32))


def plain_probs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return torch.softmax(model(pixel_values=x).logits.float(), dim=-1)


class Holder(nn.Module):
    """Plain tensors of every kind: float, integer, in a list, a tuple and a dict."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.table = torch.ones(3)
        self.index = torch.arange(4)
        self.pair = [torch.zeros(2), "not a tensor"]
        self.fixed = (torch.zeros(1),)
        self.cache = {"k": torch.ones(2), "n": 3}
        self.register_buffer("buf", torch.ones(1))


# --------------------------------------------------------------------------- plain tensors


def test_videomae_position_table_is_a_plain_attribute() -> None:
    model = tiny_videomae()
    found = plain_tensor_attributes(model)
    assert "videomae.embeddings.position_embeddings" in found
    assert "videomae.embeddings.position_embeddings" not in dict(model.named_buffers())
    model.to(torch.float64)                 # Module.to: the trap
    assert found["videomae.embeddings.position_embeddings"].dtype == torch.float32
    assert model.videomae.embeddings.position_embeddings.dtype == torch.float32


def test_move_plain_tensors_leaves_none_behind() -> None:
    model = tiny_videomae()
    moved = move_plain_tensors(model, dtype=torch.float64)
    assert "videomae.embeddings.position_embeddings" in moved
    left = {name: t.dtype for name, t in plain_tensor_attributes(model).items()
            if t.is_floating_point() and t.dtype != torch.float64}
    assert left == {}
    assert model.videomae.embeddings.position_embeddings.dtype == torch.float64
    assert move_plain_tensors(model, dtype=torch.float64) == []          # nothing left to move

    meta = copy.deepcopy(model)
    move_plain_tensors(meta, device="meta")
    assert {t.device.type for t in plain_tensor_attributes(meta).values()} == {"meta"}


def test_move_plain_tensors_in_containers_keeps_integer_dtypes() -> None:
    holder = Holder()
    moved = move_plain_tensors(holder, device="meta", dtype=torch.float16)
    assert set(moved) == {"table", "index", "pair", "fixed", "cache['k']"}
    assert holder.table.device.type == "meta" and holder.table.dtype == torch.float16
    assert holder.index.device.type == "meta" and holder.index.dtype == torch.int64
    assert isinstance(holder.pair, list) and holder.pair[0].device.type == "meta" and holder.pair[1] == "not a tensor"
    assert isinstance(holder.fixed, tuple) and holder.fixed[0].dtype == torch.float16
    assert holder.cache["k"].dtype == torch.float16 and holder.cache["n"] == 3
    # parameters and buffers are Module.to's business, not this helper's
    assert holder.linear.weight.device.type == "cpu" and holder.buf.device.type == "cpu"
    assert "buf" not in plain_tensor_attributes(holder)


# --------------------------------------------------------------------------- settings


def test_dtype_policy() -> None:
    assert auto_dtype("cpu") == torch.float32
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype(None, "cpu") is None
    assert resolve_dtype("bf16", "cpu") == torch.bfloat16
    assert resolve_dtype("fp16", "cpu") == torch.float16
    assert resolve_dtype(torch.float64, "cpu") == torch.float64
    with pytest.raises(ValueError):
        resolve_dtype("int8", "cpu")
    if torch.cuda.is_available():  # pragma: no cover
        assert auto_dtype("cuda") in (torch.bfloat16, torch.float16)


def test_compile_cache_goes_under_realtime_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("REALTIME_CACHE", str(tmp_path))
    path = configure_compile_cache()
    assert path == tmp_path / "inductor" and path.is_dir()
    import os
    assert os.environ["TRITON_CACHE_DIR"] == str(tmp_path / "triton")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert configure_compile_cache() == tmp_path / "mine"                # the user's setting wins


def test_use_sdpa(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = tiny_videomae()
    model.set_attn_implementation("eager")
    assert use_sdpa(model) == "sdpa"
    assert use_sdpa(nn.Linear(2, 2)) == "n/a"
    from transformers import AutoModelForVideoClassification

    timesformer = AutoModelForVideoClassification.from_pretrained(
        make_tiny_timesformer(tmp_path / "ts"), attn_implementation="eager")
    with caplog.at_level(logging.WARNING):
        assert use_sdpa(timesformer) == "eager"


# --------------------------------------------------------------------------- FastModel on CPU


def test_eager_wrapper_gives_the_plain_model_probabilities() -> None:
    model = tiny_videomae()
    x = windows(3)
    expected = plain_probs(model, x)
    wrapped = copy.deepcopy(model)
    fast = FastModel(wrapped, hf_forward(wrapped), INPUT_SHAPE, device="cpu")
    assert fast.device.type == "cpu" and fast.dtype == torch.float32 and fast.attn == "sdpa"
    assert not fast.cuda_graphs and not fast.compiled
    got = fast.probs(x)
    assert got.dtype == torch.float32 and got.shape == (3, 5)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(fast.predict(x), expected.numpy(), rtol=0, atol=1e-6)
    logits = fast.logits(x)
    logits += 1                                                          # callers own what they get
    torch.testing.assert_close(fast.probs(x), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("backend", ["math", "flash"])
def test_pinned_attention_kernel_computes_the_same_probabilities(backend: str) -> None:
    model = tiny_videomae()
    x = windows(2, seed=3)
    expected = plain_probs(model, x)
    fast = FastModel(model, hf_forward(model), INPUT_SHAPE, device="cpu", sdpa_backend=backend)
    assert fast.sdpa_backend == backend
    torch.testing.assert_close(fast.probs(x), expected, rtol=0, atol=1e-5)


def test_attention_kernel_errors_name_the_backend() -> None:
    model = tiny_videomae()
    with pytest.raises(ValueError, match="'fastest'.*auto, flash, cudnn"):
        FastModel(model, hf_forward(model), INPUT_SHAPE, device="cpu", sdpa_backend="fastest")
    fast = FastModel(model, hf_forward(model), INPUT_SHAPE, device="cpu", sdpa_backend="cudnn")
    no_kernel = "sdpa backend 'cudnn' has no attention kernel for torch.float32 inputs on cpu"
    with pytest.raises(ValueError, match=no_kernel):
        fast.probs(windows(1))


def test_input_buffer_is_filled_in_place_outside_inference_mode() -> None:
    model = tiny_videomae()
    wrapped = copy.deepcopy(model)
    fast = FastModel(wrapped, hf_forward(wrapped), INPUT_SHAPE, device="cpu")
    assert fast.module is wrapped
    buffer = fast.input_buffer(2)
    x = windows(2, seed=3)
    buffer.copy_(x)                                                      # no inference-tensor error
    torch.testing.assert_close(fast.probs(buffer), plain_probs(model, x), rtol=0, atol=1e-6)
    assert fast.input_buffer(1).data_ptr() == buffer.data_ptr()         # one buffer, sliced
    fast.warmup((1, 2))
    with pytest.raises(ValueError, match="shape"):
        fast.logits(torch.zeros(1, FRAMES, 3, SIZE + 1, SIZE))


def test_wrapper_casts_module_and_inputs() -> None:
    model = tiny_videomae()
    x = windows(2)
    expected = plain_probs(model, x)
    wrapped = copy.deepcopy(model)
    fast = FastModel(wrapped, hf_forward(wrapped), INPUT_SHAPE, device="cpu", dtype="bfloat16")
    assert next(wrapped.parameters()).dtype == torch.bfloat16
    assert wrapped.videomae.embeddings.position_embeddings.dtype == torch.bfloat16
    assert "videomae.embeddings.position_embeddings" in fast.moved_attributes
    got = fast.probs(x)                                                  # float32 input is cast
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=0, atol=0.05)


def test_cuda_graphs_requested_on_cpu_fall_back_to_eager(caplog: pytest.LogCaptureFixture) -> None:
    model = tiny_videomae()
    with caplog.at_level(logging.WARNING):
        fast = FastModel(model, hf_forward(model), INPUT_SHAPE, device="cpu", cuda_graphs=True)
    assert not fast.cuda_graphs
    assert "CUDA graphs need a CUDA device" in caplog.text
    assert fast.probs(windows(1)).shape == (1, 5)


def test_compiled_wrapper_matches_eager() -> None:
    """The torch.compile path (dynamo with the "eager" backend: no C++/Triton toolchain needed)."""
    model = tiny_videomae()
    x = windows(2)
    expected = plain_probs(model, x)
    wrapped = copy.deepcopy(model)
    fast = FastModel(wrapped, hf_forward(wrapped), INPUT_SHAPE, device="cpu", compile=True,
                     compile_backend="eager")
    assert fast.compiled
    torch.testing.assert_close(fast.probs(x), expected, rtol=0, atol=1e-6)


def test_i3d_adapter_matches_the_classifier_layout() -> None:
    from realtime.models.i3d import MIN_FRAMES, InceptionI3d

    torch.manual_seed(0)
    net = InceptionI3d(num_classes=7).eval()
    x = torch.randn(1, MIN_FRAMES, 3, 224, 224)                         # (B, T, C, H, W)
    with torch.inference_mode():
        expected = torch.softmax(net(x.permute(0, 2, 1, 3, 4)), dim=-1)
    fast = FastModel(net, i3d_forward(net), (MIN_FRAMES, 3, 224, 224), device="cpu")
    assert fast.attn == "n/a"
    torch.testing.assert_close(fast.probs(x), expected, rtol=0, atol=1e-5)


# --------------------------------------------------------------------------- CUDA only


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
def test_cuda_graphs_match_eager() -> None:  # pragma: no cover - GPU machines only
    model = tiny_videomae()
    x = windows(3)
    eager_model = copy.deepcopy(model)
    eager = FastModel(eager_model, hf_forward(eager_model), INPUT_SHAPE, device="cuda", dtype="auto",
                      cuda_graphs=False)
    graphed_model = copy.deepcopy(model)
    graphed = FastModel(graphed_model, hf_forward(graphed_model), INPUT_SHAPE, device="cuda", dtype="auto")
    assert graphed.cuda_graphs and graphed.dtype == auto_dtype("cuda")
    assert graphed_model.videomae.embeddings.position_embeddings.device.type == "cuda"
    graphed.warmup((1, 3))
    assert graphed.captured_batches == (1, 3)
    torch.testing.assert_close(graphed.probs(x), eager.probs(x), rtol=0, atol=1e-3)
    first = graphed.probs(x[:1]).clone()
    graphed.probs(x[1:2])                                                # replay overwrites the static output
    torch.testing.assert_close(first, eager.probs(x[:1]), rtol=0, atol=1e-3)
    buffer = graphed.input_buffer(3)
    buffer.copy_(x)
    torch.testing.assert_close(graphed.probs(buffer), eager.probs(x), rtol=0, atol=1e-3)
    # fp32 reference on the same device, loose bound for bf16
    torch.testing.assert_close(graphed.probs(x).cpu(), plain_probs(model, x), rtol=0, atol=0.05)


@cuda
@pytest.mark.parametrize("backend", ["flash", "cudnn", "efficient"])
def test_cuda_graphs_with_a_pinned_attention_kernel(backend: str) -> None:  # pragma: no cover - GPU only
    model = tiny_videomae()
    x = windows(3, seed=5)
    auto_model = copy.deepcopy(model)
    auto = FastModel(auto_model, hf_forward(auto_model), INPUT_SHAPE, device="cuda", dtype="auto",
                     cuda_graphs=False)
    pinned = FastModel(model, hf_forward(model), INPUT_SHAPE, device="cuda", dtype="auto", sdpa_backend=backend)
    try:
        got = pinned.probs(x)
    except ValueError as exc:
        pytest.skip(str(exc))                        # e.g. no cuDNN attention on this GPU
    assert pinned.captured_batches == (3,)
    torch.testing.assert_close(got, auto.probs(x), rtol=0, atol=1e-2)


@cuda
def test_cuda_graph_buckets_pad() -> None:  # pragma: no cover - GPU machines only
    model = tiny_videomae()
    fast = FastModel(model, hf_forward(model), INPUT_SHAPE, device="cuda", graph_batches=(4,))
    x = windows(3)
    assert fast.probs(x).shape == (3, 5)
    assert fast.captured_batches == (4,)
    assert fast.probs(windows(5)).shape == (5, 5)                        # larger: eager
