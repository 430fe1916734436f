"""Device-side per-frame preprocessing (realtime.accel.resample, realtime.accel.device_ring) against
the CPU path, run on CPU tensors.

The device path re-implements the CPU kernels in integer arithmetic, so the bound is
exact equality:

* uint8 RGB crop (``FramePreprocessor.rgb_uint8`` vs ``prepare_frame``): 0 levels of
  difference, for every supported interpolation ("linear" = OpenCV INTER_LINEAR,
  "pil_bilinear" / "pil_bicubic" = torch's antialiased uint8 resize);
* normalised float32 (``normalized`` vs ``normalize(prepare_frame(...))``): 0 (the same
  float32 operations in the same order), asserted as ``<= NORMALIZED_BOUND`` = 1e-6 so
  the message shows the size of any regression;
* a cast to bfloat16 of equal float32 values is equal.

The same code runs on CUDA with the same integer and float32 operations; the CUDA test
at the end runs only where a GPU is present.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from realtime.accel.device_ring import DeviceFrameRing, StaleFrameError, gather_windows
from realtime.accel.resample import (
    SUPPORTED_INTERPOLATIONS,
    FramePreprocessor,
    aa_axis_plan,
    make_plan,
    supports,
)
from realtime.models.i3d import INPUT_SPEC as I3D_SPEC
from realtime.core.preprocess import normalize, prepare_frame
from realtime.core.types import InputSpec

CLIPS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "clips"
CLIP_NAMES = ("abseiling.mp4", "arm_wrestling.mp4", "flipping_pancake.mkv", "shooting_basketball.avi")

UINT8_BOUND = 0            # levels
NORMALIZED_BOUND = 1e-6    # float32, normalised units

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPECS = {
    "videomae-224": InputSpec(224, (224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="pil_bilinear"),
    "i3d": I3D_SPEC,                                                        # linear, 256 -> 224, x/127.5 - 1
    "linear-224": InputSpec(224, (224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="linear"),
    "bicubic-224": InputSpec(224, (224, 224), mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="pil_bicubic"),
    "vivit-256": InputSpec(256, (224, 224), scale=1 / 127.5, offset=-1.0, interpolation="pil_bilinear"),
    "tiny-32": InputSpec(32, (32, 32), mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="pil_bilinear"),
    "rect-linear": InputSpec(160, (128, 144), interpolation="linear"),
}


def real_frames() -> list[np.ndarray]:
    """Three frames from each shared clip (their sizes: 454x256, 340x256, 426x240, 320x240)."""
    if not CLIPS_DIR.is_dir():
        pytest.skip(f"no shared clips at {CLIPS_DIR}")
    frames = []
    for name in CLIP_NAMES:
        cap = cv2.VideoCapture(str(CLIPS_DIR / name))
        for index in (0, 25, 50):
            cap.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, frame = cap.read()
            if ok:
                frames.append(frame)
        cap.release()
    if not frames:
        pytest.skip("cannot decode the shared clips")
    return frames


def synthetic_frames() -> list[np.ndarray]:
    """Noise (the worst case for rounding) and smooth frames: downscales, exact 2x, upscales, portrait."""
    rng = np.random.default_rng(7)
    sizes = [(720, 1280), (1080, 1920), (448, 600), (512, 683), (300, 200), (100, 130), (257, 341), (224, 224)]
    frames = [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for size in sizes]
    small = rng.integers(0, 256, (45, 80, 3), dtype=np.uint8)
    frames.append(cv2.resize(small, (1280, 720), interpolation=cv2.INTER_CUBIC))   # smooth 720p
    ramp = np.linspace(0, 255, 640, dtype=np.float32)
    frames.append(np.broadcast_to(ramp[None, :, None], (480, 640, 3)).astype(np.uint8))
    return frames


def check_frame(pre: FramePreprocessor, frame: np.ndarray) -> None:
    spec = pre.spec
    expected = prepare_frame(frame, spec)
    got = pre.rgb_uint8(torch.from_numpy(frame)).permute(1, 2, 0).numpy()
    diff = np.abs(expected.astype(np.int16) - got.astype(np.int16))
    assert diff.max() <= UINT8_BOUND, (
        f"{spec.interpolation} {frame.shape}: {int(diff.max())} levels off on {(diff > 0).mean():.4%} of values")
    expected_n = normalize(expected[None], spec)[0].transpose(2, 0, 1)
    got_n = pre.normalized(torch.from_numpy(frame)).numpy()
    assert got_n.dtype == np.float32
    assert np.abs(expected_n - got_n).max() <= NORMALIZED_BOUND


@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_real_frames_match_cpu_path(spec_name: str) -> None:
    pre = FramePreprocessor(SPECS[spec_name], "cpu")
    for frame in real_frames():
        check_frame(pre, frame)


@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_synthetic_frames_match_cpu_path(spec_name: str) -> None:
    pre = FramePreprocessor(SPECS[spec_name], "cpu")
    for frame in synthetic_frames():
        if min(frame.shape[:2]) < 16:
            continue
        try:
            prepare_frame(frame, pre.spec)
        except ValueError:       # crop larger than the resized frame: both paths refuse
            with pytest.raises(ValueError):
                pre.rgb_uint8(torch.from_numpy(frame))
            continue
        check_frame(pre, frame)


def test_plans_cover_the_special_cases() -> None:
    linear = SPECS["linear-224"]
    assert make_plan(448, 600, linear, "cpu").mode == "cv2_area2x"         # exact 2x: OpenCV's area path
    assert make_plan(720, 1280, linear, "cpu").mode == "cv2_linear"
    assert make_plan(256, 454, I3D_SPEC, "cpu").mode == "crop"             # already 256 on the short side
    assert make_plan(720, 1280, SPECS["videomae-224"], "cpu").mode == "aa"


def test_aa_weights_are_torch_like() -> None:
    # 720 -> 224: weights of each output sum to about 2^precision, support widens with the downscale
    plan = aa_axis_plan(720, 224, 0, 224, "pil_bilinear")
    sums = plan.weight.sum(axis=1)
    assert np.all(np.abs(sums - (1 << plan.precision)) <= plan.weight.shape[1])
    assert plan.weight.shape[1] == 2 * int(np.ceil(720 / 224)) + 1
    assert plan.index.min() >= 0 and plan.index.max() <= 719


def test_unsupported_interpolation_is_refused() -> None:
    spec = InputSpec(224, (224, 224), interpolation="area")
    assert not supports(spec)
    assert set(SUPPORTED_INTERPOLATIONS) == {"linear", "pil_bilinear", "pil_bicubic"}
    with pytest.raises(ValueError, match="CPU path"):
        FramePreprocessor(spec, "cpu")
    with pytest.raises(ValueError, match="CPU path"):
        DeviceFrameRing(4, spec, "cpu")


# --------------------------------------------------------------------------- ring


def cpu_window(frames: list[np.ndarray], spec: InputSpec) -> np.ndarray:
    """What the CPU pipeline feeds a model: (T, 3, H, W) float32."""
    clip = np.stack([prepare_frame(f, spec) for f in frames])
    return normalize(clip, spec).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("spec_name", ["videomae-224", "i3d"])
def test_ring_windows_equal_cpu_windows(spec_name: str) -> None:
    spec = SPECS[spec_name]
    frames = synthetic_frames()[:2] + [f for f in synthetic_frames()[8:9]]
    frames = [frames[i % len(frames)] for i in range(6)]
    ring = DeviceFrameRing(8, spec, "cpu", torch.float32)
    slots = [ring.push(f) for f in frames]
    assert slots == list(range(6)) and ring.written == 6
    window = ring.gather(slots[1:5])
    assert window.shape == (4, 3, *spec.crop) and window.dtype == torch.float32
    np.testing.assert_array_equal(window.numpy(), cpu_window(frames[1:5], spec))

    batch = ring.gather([[0, 1, 2], [3, 4, 5]])
    assert batch.shape == (2, 3, 3, *spec.crop)
    np.testing.assert_array_equal(batch[1].numpy(), cpu_window(frames[3:6], spec))

    out = torch.empty((2, 2, 3, *spec.crop))
    result = ring.gather([5, 0], out=out[1])
    assert result.data_ptr() == out[1].data_ptr()
    np.testing.assert_array_equal(out[1].numpy(), cpu_window([frames[5], frames[0]], spec))


def test_ring_in_bfloat16_is_the_cast_of_float32() -> None:
    spec = SPECS["videomae-224"]
    frame = synthetic_frames()[0]
    ring = DeviceFrameRing(2, spec, "cpu", torch.bfloat16)
    ring.put(1, frame)
    got = ring.gather([1])
    assert got.dtype == torch.bfloat16
    expected = torch.from_numpy(cpu_window([frame], spec)).to(torch.bfloat16)
    assert torch.equal(got, expected)


def test_ring_round_robin_growth_and_errors() -> None:
    spec = SPECS["tiny-32"]
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(5)]
    ring = DeviceFrameRing(3, spec, "cpu")
    assert [ring.push(f) for f in frames[:4]] == [0, 1, 2, 0]
    before = ring.gather([0, 1, 2]).clone()
    ring.ensure_capacity(5)
    assert ring.capacity == 5 and ring.frames.shape[0] == 5
    assert torch.equal(ring.gather([0, 1, 2]), before)                  # slots keep their frames
    assert ring.push(frames[4]) == 1
    ring.ensure_capacity(2)                                               # never shrinks
    assert ring.capacity == 5
    with pytest.raises(IndexError):
        ring.gather([5])
    with pytest.raises(IndexError):
        ring.put(-1, frames[0])
    with pytest.raises(ValueError):
        ring.put(0, frames[0][:, :, 0])
    with pytest.raises(ValueError):
        ring.put(0, frames[0].astype(np.float32))
    # read-only and non-contiguous frames are accepted
    view = frames[0][:, ::-1]
    view.flags.writeable = False
    ring.put(3, view)
    np.testing.assert_array_equal(ring.gather([3])[0].numpy(), cpu_window([np.ascontiguousarray(view)], spec)[0])


def test_ring_handles_detect_rewritten_slots() -> None:
    spec = SPECS["tiny-32"]
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(4)]
    ring = DeviceFrameRing(3, spec, "cpu")
    handles = np.stack([ring.push_handle(f) for f in frames[:3]])      # (3, 2): [slot, sequence]
    assert handles.tolist() == [[0, 1], [1, 2], [2, 3]]
    window = ring.gather(handles[:, 0], sequences=handles[:, 1])
    np.testing.assert_array_equal(window.numpy(), cpu_window(frames[:3], spec))
    assert ring.put(0, frames[3]) == 4                                  # slot 0 rewritten
    with pytest.raises(StaleFrameError):
        ring.gather(handles[:, 0], sequences=handles[:, 1])
    assert ring.gather(handles[1:, 0], sequences=handles[1:, 1]).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError):
        ring.gather([1, 2], sequences=[2])
    ring.ensure_capacity(4)
    assert ring.gather([[1, 2]], sequences=[[2, 3]]).shape == (1, 2, 3, 32, 32)


def test_a_batch_of_windows_from_many_rings_skips_only_the_stale_ones() -> None:
    spec = SPECS["tiny-32"]
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (40, 56, 3), dtype=np.uint8) for _ in range(9)]
    rings = [DeviceFrameRing(4, spec, "cpu") for _ in range(3)]
    handles = [np.stack([ring.push_handle(f) for f in frames[3 * r:3 * r + 3]]) for r, ring in enumerate(rings)]
    out = torch.full((4, 3, 3, 32, 32), float("nan"))
    windows = [(rings[2], handles[2][:, 0], handles[2][:, 1]), (rings[0], handles[0][:, 0], handles[0][:, 1]),
               (rings[1], handles[1][::-1, 0], handles[1][::-1, 1])]
    assert gather_windows(windows, out) == [0, 1, 2]
    np.testing.assert_array_equal(out[0].numpy(), cpu_window(frames[6:9], spec))
    np.testing.assert_array_equal(out[1].numpy(), cpu_window(frames[0:3], spec))
    np.testing.assert_array_equal(out[2].numpy(), cpu_window(frames[5:2:-1], spec))
    assert torch.isnan(out[3]).all()                                  # untouched
    rings[2].put(int(handles[2][1, 0]), frames[0])                     # ring 2's window goes stale
    out.fill_(float("nan"))
    assert gather_windows(windows, out) == [1, 2]                      # the others move up
    np.testing.assert_array_equal(out[0].numpy(), cpu_window(frames[0:3], spec))
    np.testing.assert_array_equal(out[1].numpy(), cpu_window(frames[5:2:-1], spec))
    assert torch.isnan(out[2:]).all()
    assert gather_windows([windows[0]], out) == [] and gather_windows([], out) == []
    with pytest.raises(IndexError):
        gather_windows([(rings[0], np.array([0, 1, 4]), handles[0][:, 1])], out)
    with pytest.raises(ValueError, match="does not fit"):
        gather_windows([(rings[0], handles[0][:2, 0], handles[0][:2, 1])], out)
    with pytest.raises(ValueError, match="does not match"):
        gather_windows([windows[1]], out.double())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_ring_equals_cpu() -> None:  # pragma: no cover - runs on GPU machines only
    for name in ("videomae-224", "i3d"):
        spec = SPECS[name]
        frames = synthetic_frames()[:4]
        ring = DeviceFrameRing(6, spec, "cuda", torch.float32)
        slots = [ring.push(f) for f in frames]
        got = ring.gather(slots).cpu().numpy()
        np.testing.assert_allclose(got, cpu_window(frames, spec), rtol=0, atol=NORMALIZED_BOUND)
        ring16 = DeviceFrameRing(6, spec, "cuda", torch.bfloat16)
        slots = [ring16.push(f) for f in frames]
        expected = torch.from_numpy(cpu_window(frames, spec)).to(torch.bfloat16)
        assert torch.equal(ring16.gather(slots).cpu(), expected)


@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_plan_for_only_the_pixels_it_reads(spec_name: str) -> None:
    """The GPU ring uploads only the rows and columns the resize reads: same result."""
    pre = FramePreprocessor(SPECS[spec_name], "cpu")
    for frame in synthetic_frames()[:6]:
        try:
            plan = pre.plan(*frame.shape[:2])
        except ValueError:       # crop larger than the resized frame
            continue
        part = frame[plan.rows[0]:plan.rows[1] + 1, plan.cols[0]:plan.cols[1] + 1]
        assert part.size <= frame.size
        got = pre.normalized(torch.from_numpy(np.ascontiguousarray(part)), plan=plan.cropped_to_reads())
        assert torch.equal(got, pre.normalized(torch.from_numpy(frame)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_ring_replays_its_graph_frame_after_frame() -> None:  # pragma: no cover - GPU machines only
    """Many frames of one size: uploaded through the rotating pinned buffers and prepared by the
    captured graph; every slot still holds exactly its own frame."""
    rng = np.random.default_rng(11)
    base = cv2.resize(rng.integers(0, 256, (45, 80, 3), dtype=np.uint8), (1280, 720))
    frames = [np.clip(base.astype(np.int16) + rng.integers(-40, 40, base.shape), 0, 255).astype(np.uint8)
              for _ in range(10)]
    for name in ("videomae-224", "i3d"):
        spec = SPECS[name]
        ring = DeviceFrameRing(6, spec, "cuda", torch.float32)
        handles = [ring.push_handle(f) for f in frames]
        assert ring._graph is not None                      # the replayed path really ran
        last = np.stack(handles[-6:])
        got = ring.gather(last[:, 0], sequences=last[:, 1]).cpu().numpy()
        np.testing.assert_allclose(got, cpu_window(frames[-6:], spec), rtol=0, atol=NORMALIZED_BOUND)
        eager = DeviceFrameRing(6, spec, "cuda", torch.float32, cuda_graphs=False)
        slots = [eager.push(f) for f in frames[-6:]]
        assert eager._graph is None and torch.equal(eager.gather(slots).cpu(), torch.from_numpy(got))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_rings_capture_in_many_threads_at_once() -> None:  # pragma: no cover - GPU machines only
    """One ring per camera thread, all capturing their graphs at the same moment, while another
    thread synchronizes the device (overlapping captures once aborted the process, and a
    device-wide synchronize invalidates a capture running in another thread)."""
    import threading
    spec = SPECS["videomae-224"]
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8) for _ in range(4)]
    # 40 rings: more streams than torch's pool of 32 holds, so rings share streams (as with
    # dozens of cameras) and a capture's stream is another ring's.
    rings = [DeviceFrameRing(4, spec, "cuda", torch.float32) for _ in range(40)]
    start = threading.Barrier(len(rings))
    errors = []

    def feed(ring):
        try:
            start.wait()
            for f in frames:
                ring.push(f)
        except Exception as exc:       # reported below
            errors.append(exc)

    from realtime.accel.graph_gate import device_synchronize
    stop = threading.Event()

    def synchronize_meanwhile():      # as the model's warm-up and a growing ring do
        while not stop.is_set():
            device_synchronize("cuda")

    syncer = threading.Thread(target=synchronize_meanwhile)
    threads = [threading.Thread(target=feed, args=(r,)) for r in rings]
    syncer.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    stop.set()
    syncer.join(10)
    assert not errors, errors
    expected = cpu_window(frames, spec)
    for ring in rings:
        assert ring._graph is not None
        np.testing.assert_allclose(ring.gather([0, 1, 2, 3]).cpu().numpy(), expected, rtol=0,
                                   atol=NORMALIZED_BOUND)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("cameras", [1, 3])
def test_cuda_rings_gather_while_their_cameras_write(cameras: int) -> None:  # pragma: no cover - GPU only
    """The writer holds the ring's lock only to book and publish a write, so gathers run while
    frames upload: every window that passes its sequence check holds exactly its frames. One
    camera: ``ring.gather``; three: a batch from all three rings with ``gather_windows``."""
    import collections
    import threading
    spec = SPECS["videomae-224"]
    rng = np.random.default_rng(5)
    frames = [rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8) for _ in range(5)]
    prepared = cpu_window(frames, spec)
    rings = [DeviceFrameRing(8, spec, "cuda", torch.float32) for _ in range(cameras)]
    # per ring: (slot, sequence, frame index) of its newest 4 writes
    written: list[collections.deque] = [collections.deque(maxlen=4) for _ in rings]
    lock, stop = threading.Lock(), threading.Event()

    def camera(r: int) -> None:
        i = r
        while not stop.is_set():
            handle = rings[r].push_handle(frames[i % len(frames)])
            with lock:
                written[r].append((int(handle[0]), int(handle[1]), i % len(frames)))
            i += 1

    writers = [threading.Thread(target=camera, args=(r,), daemon=True) for r in range(cameras)]
    for writer in writers:
        writer.start()
    checked = stale = 0
    out = torch.empty((cameras, 4, 3, *spec.crop), device="cuda")
    deadline = time.monotonic() + 5
    try:
        while time.monotonic() < deadline:
            with lock:
                windows = [list(w) for w in written]
            if min(len(w) for w in windows) < 4:
                continue
            if cameras == 1:
                try:
                    got = [rings[0].gather([w[0] for w in windows[0]], sequences=[w[1] for w in windows[0]])]
                    kept = [0]
                except StaleFrameError:
                    stale += 1
                    continue
            else:
                out.fill_(float("nan"))
                kept = gather_windows([(ring, np.array([w[0] for w in window]), np.array([w[1] for w in window]))
                                       for ring, window in zip(rings, windows)], out)
                got = [out[j] for j in range(len(kept))]
                stale += cameras - len(kept)
            for j, r in enumerate(kept):
                np.testing.assert_allclose(got[j].cpu().numpy(), prepared[[w[2] for w in windows[r]]], rtol=0,
                                           atol=NORMALIZED_BOUND)
                checked += 1
    finally:
        stop.set()
        for writer in writers:
            writer.join(10)
    assert checked >= 20 * cameras, (checked, stale)
