"""The device/dtype resolver, the two window paths behind one protocol, ring sizing and the lock
order checks (realtime.accel.device, realtime.stream.windows, realtime.stream.device_windows)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn

from realtime.accel.device import DeviceError, resolve_device, resolve_dtype
from realtime.accel.device_ring import DeviceFrameRing
from realtime.accel.fast_model import FastModel
from realtime.accel.graph_gate import CUDA_GRAPH_CAPTURE_LOCK, CaptureGate
from realtime.core.errors import ModelError
from realtime.core.preprocess import normalize, prepare_frame
from realtime.core.types import InputSpec
from realtime.models.base import accelerator_of
from realtime.models.i3d import _resolve_device, _resolve_dtype
from realtime.stream.device_windows import DEVICE_RING_MARGIN, DeviceBatchClassifier, DeviceWindowStore
from realtime.core.types import DEFAULT_FPS
from realtime.stream.ring import ring_capacity
from realtime.stream.windows import HostBatchClassifier, HostWindowStore, batch_classifier
from realtime.threads import OwnedLock

SPEC = InputSpec(resize_short=16, crop=(16, 16), interpolation="linear")
FRAMES = 4
LABELS = ("a", "b", "c")


# --------------------------------------------------------------------------- resolver


def test_device_rule() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(DeviceError, match="'tpu'.*auto, cpu, cuda or cuda:N") as info:
        resolve_device("tpu")
    assert isinstance(info.value, ModelError) and isinstance(info.value, ValueError)
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="'cuda:1' requested but CUDA is not available"):
            resolve_device("cuda:1")
        assert resolve_device("cuda:1", check=False) == torch.device("cuda", 1)   # checked at load()


def test_dtype_rule() -> None:
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("auto", "cpu", half=torch.float16) == torch.float32
    assert resolve_dtype("torch.bfloat16", "cpu") == torch.bfloat16
    with pytest.raises(DeviceError, match="'int8'.*auto, float32, bfloat16 or float16"):
        resolve_dtype("int8", "cpu")
    if torch.cuda.is_available():  # pragma: no cover - GPU machines only
        assert resolve_dtype("auto", "cuda", half=torch.float16) == torch.float16


def test_i3d_keeps_its_strings() -> None:
    """I3D and the fine-tuned I3D keep device and dtype as strings; "auto" is float16 on CUDA."""
    assert _resolve_device("cpu") == "cpu" and _resolve_device("cuda:1") == "cuda:1"
    assert _resolve_dtype("auto", "cpu") == "float32" and _resolve_dtype("fp16", "cpu") == "float16"
    assert _resolve_dtype("auto", "cuda") == "float16"
    with pytest.raises(ValueError):
        _resolve_device("tpu")


# --------------------------------------------------------------------------- window paths


class _Mean(nn.Module):
    """(B, T, C, H, W) -> (B, 3) logits: the per-channel means, so results are checkable."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 3, 4))


class _Classifier:
    """A ClipClassifier with (``fast``) or without an accelerator."""

    name = "fake"
    labels = LABELS
    num_frames = FRAMES
    window_seconds = 1.0
    input_spec = SPEC
    device = "cpu"

    def __init__(self) -> None:
        self.fast = FastModel(_Mean(), _Mean().forward, (FRAMES, 3, *SPEC.crop), device="cpu")

    def load(self) -> None:
        pass

    def predict(self, clips: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(normalize(clips, SPEC)).permute(0, 1, 4, 2, 3)
        return self.fast.predict(x)


class _Accelerated(_Classifier):
    def accelerator(self) -> FastModel:
        return self.fast


def _frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(n)]


def test_one_factory_chooses_the_path() -> None:
    plain, accelerated = _Classifier(), _Accelerated()
    assert accelerator_of(plain) is None and accelerator_of(accelerated) is accelerated.fast
    choose = lambda clf, mode: batch_classifier(clf, preprocess=mode, num_frames=FRAMES,  # noqa: E731
                                                max_batch=2)
    assert isinstance(choose(plain, "device"), HostBatchClassifier)            # no accelerator
    assert isinstance(choose(accelerated, "cpu"), HostBatchClassifier)
    assert isinstance(choose(accelerated, "auto"), HostBatchClassifier)        # a CPU model
    assert isinstance(choose(accelerated, "device"), DeviceBatchClassifier)
    other_length = batch_classifier(accelerated, preprocess="device", num_frames=FRAMES + 1, max_batch=2)
    assert isinstance(other_length, HostBatchClassifier)
    with pytest.raises(ValueError, match="preprocess"):
        choose(accelerated, "gpu")


def test_both_paths_give_the_same_probabilities() -> None:
    clf = _Accelerated()
    host = HostBatchClassifier(clf)
    device = batch_classifier(clf, preprocess="device", num_frames=FRAMES, max_batch=2)
    frames = _frames(6)
    h_stores = [host.new_store(8), host.new_store(8)]
    d_stores = [device.new_store(8), device.new_store(8)]
    assert all(isinstance(s, HostWindowStore) and s.device is None for s in h_stores)
    assert all(isinstance(s, DeviceWindowStore) and s.device == "cpu" for s in d_stores)
    h_entries, d_entries = host.entries(2, FRAMES), device.entries(2, FRAMES)
    for row, (hs, ds) in enumerate(zip(h_stores, d_stores)):
        for t, frame in enumerate(frames[row:row + FRAMES]):
            h_entries[row, t] = hs.prepare(frame, SPEC)
            d_entries[row, t] = ds.prepare(frame, SPEC)
    np.testing.assert_array_equal(h_entries[0, 0], prepare_frame(frames[0], SPEC))
    h = host.classify(h_entries, h_stores)
    d = device.classify(d_entries, d_stores)
    assert h.kept == d.kept == [0, 1] and d.gather_seconds > 0
    np.testing.assert_allclose(h.probs, d.probs, atol=1e-6)
    # A window whose frame was overwritten on the device since its handle was taken is skipped.
    for i in range(d_stores[0].ring.capacity):
        d_stores[0].prepare(frames[i % len(frames)], SPEC)
    d = device.classify(d_entries, d_stores)
    assert d.kept == [1]
    np.testing.assert_allclose(d.probs, h.probs[1:], atol=1e-6)
    with pytest.raises(TypeError, match="HostWindowStore"):
        device.classify(d_entries, [h_stores[0]])


def test_device_store_grows_with_its_ring() -> None:
    store = DeviceWindowStore(DeviceFrameRing(4, SPEC, "cpu"))
    store.grow(10)
    assert store.ring.capacity == 10 + DEVICE_RING_MARGIN


def test_ring_capacity() -> None:
    assert DEFAULT_FPS == 30.0
    assert ring_capacity(2.5) == int(2.5 * 30 * 1.25) + 8
    assert ring_capacity(2.5, 60.0) > ring_capacity(2.5)


# --------------------------------------------------------------------------- lock order


def test_owned_lock_knows_its_holder() -> None:
    lock = OwnedLock()
    seen = []
    with lock:
        assert lock.held() and lock.locked()
        other = threading.Thread(target=lambda: seen.append(lock.held()))
        other.start()
        other.join(1)
    assert seen == [False] and not lock.held() and not lock.locked()


def test_capture_gate_knows_its_holders() -> None:
    gate = CaptureGate()
    assert not gate.held()
    with gate.shared():
        assert gate.held()
    with gate:
        assert gate.held()
    assert not gate.held()


def test_a_ring_lock_inside_the_gate_is_caught() -> None:
    """Ring locks come before the capture gate: gathering while holding it is a lock-order bug."""
    if not __debug__:  # pragma: no cover
        pytest.skip("assertions are off (python -O)")
    ring = DeviceFrameRing(4, SPEC, "cpu")
    ring.push(_frames(1)[0])
    with CUDA_GRAPH_CAPTURE_LOCK.shared(), pytest.raises(AssertionError, match="lock order"):
        ring.gather([0])
    assert ring.gather([0]).shape == (1, 3, *SPEC.crop)
