"""The transformers backend (tiny local checkpoints, offline) and HF-matching frame preprocessing.

Nothing here touches the Hugging Face Hub: models are built by ``tests/support/tiny_models.py``
and every load runs with ``HF_HUB_OFFLINE=1`` and an empty hub cache.

Tolerances, in normalised units (the model's input after ``(x/255 - mean) / std``):

* One uint8 level is ``1 / 255 / std``: 0.0175 for ImageNet std (min 0.224), 0.0078 for
  std 0.5. ``"pil_bilinear"`` uses torch's antialiased resize, a port of PIL's filter with
  its own fixed-point rounding, so it may differ from PIL (the processor's backend here)
  by one level on a few pixels: the bound is one level plus float slack.
* Without a resize both paths see identical uint8 pixels and differ only in float32
  rounding (about 1e-7 relative).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from transformers import AutoImageProcessor, VideoMAEImageProcessor
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from realtime.core.errors import ModelError
from realtime.models.base import ClipClassifier
from realtime.models.hf import HFVideoClassifier
from realtime.models.hf_inputs import input_spec_from_processor, resample_indices, window_seconds_for
from realtime.core.preprocess import hf_resized_size, normalize, prepare_frame, resized_size
from realtime.core.types import InputSpec

try:
    from tests.support.tiny_models import make_tiny_timesformer, make_tiny_videomae
except ImportError:  # run with tests/ (not the repository root) on sys.path
    from support.tiny_models import make_tiny_timesformer, make_tiny_videomae

CLIPS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "clips"
CLIP_SUFFIXES = (".mp4", ".mkv", ".avi")
LABELS = ("walking the dog", "tying a tie", "juggling", "archery", "yoga")

ONE_LEVEL_IMAGENET = 1 / 255 / min(IMAGENET_DEFAULT_STD)  # 0.0175
PREPROCESS_BOUND = ONE_LEVEL_IMAGENET + 1e-5
SPEC_224 = InputSpec(
    resize_short=224, crop=(224, 224), mean=tuple(IMAGENET_DEFAULT_MEAN), std=tuple(IMAGENET_DEFAULT_STD),
    interpolation="pil_bilinear",
)


def hf_processor_224() -> VideoMAEImageProcessor:
    """The Kinetics VideoMAE processor settings (MCG-NJU/videomae-base-finetuned-kinetics)."""
    return VideoMAEImageProcessor(
        size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224},
        image_mean=IMAGENET_DEFAULT_MEAN, image_std=IMAGENET_DEFAULT_STD,
    )


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """HF_HUB_OFFLINE=1 and an empty hub cache (huggingface_hub reads both at import, so patch constants too)."""
    import huggingface_hub.constants as hub_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_videomae(tmp_path_factory.mktemp("tiny-videomae"), num_labels=5, labels=LABELS)


@pytest.fixture
def tiny(tiny_dir: Path, offline: None) -> HFVideoClassifier:
    clf = HFVideoClassifier(tiny_dir, device="cpu")
    clf.load()
    return clf


def smooth_frames(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """(n, H, W, 3) uint8 frames with image-like structure (upsampled noise), different per frame."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_CUBIC) for f in small])


def read_frames(path: Path, count: int = 8) -> list[np.ndarray]:
    """``count`` BGR frames spread over the clip, decoded with OpenCV."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        cap.release()
    if not frames:
        pytest.fail(f"OpenCV decoded no frames from {path}")
    picks = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    return [frames[i] for i in picks]


def real_clips() -> list[Path]:
    if not CLIPS_DIR.is_dir():
        return []
    return sorted(p for p in CLIPS_DIR.iterdir() if p.suffix.lower() in CLIP_SUFFIXES)


def ours_vs_hf(bgr_frames: list[np.ndarray], spec: InputSpec = SPEC_224) -> tuple[float, float]:
    """(largest |difference|, fraction of values that differ) between prepare_frame + normalize and
    VideoMAEImageProcessor on the same frames, in normalised units."""
    ours = normalize(np.stack([prepare_frame(f, spec) for f in bgr_frames]), spec)
    rgb = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in bgr_frames]
    ref = hf_processor_224()(rgb, return_tensors="np")["pixel_values"][0].transpose(0, 2, 3, 1)
    assert ours.shape == ref.shape
    diff = np.abs(ours - ref)
    return float(diff.max()), float((diff > 1e-4).mean())


# --------------------------------------------------------------------------- loading


def test_loads_offline_from_local_dir(tiny: HFVideoClassifier) -> None:
    assert isinstance(tiny, ClipClassifier)
    assert tiny.labels == LABELS
    assert tiny.num_frames == 16
    assert tiny.window_seconds == pytest.approx(16 * 4 / 30)
    assert tiny.device == "cpu"
    assert tiny.dtype == torch.float32
    assert tiny.attn == "sdpa"
    assert tiny.input_spec == InputSpec(
        resize_short=32, crop=(32, 32), scale=1 / 255, mean=tuple(IMAGENET_DEFAULT_MEAN),
        std=tuple(IMAGENET_DEFAULT_STD), interpolation="pil_bilinear",
    )


def test_constructor_only_stores(tmp_path: Path) -> None:
    clf = HFVideoClassifier(tmp_path / "not-there", device="cpu")  # no error until load()
    assert not clf.loaded and clf.labels == ()
    with pytest.raises(ModelError, match="not loaded"):
        clf.predict(np.zeros((1, 16, 32, 32, 3), np.uint8))


def test_model_settings_reach_the_fast_model(tiny_dir: Path, offline: None, caplog: pytest.LogCaptureFixture) -> None:
    """model.sdpa_backend and model.compile from the configuration: the kernel is pinned; compiling
    applies to CUDA only, so on a CPU it is refused with a warning and the model runs as is."""
    from realtime.config import load_config
    from realtime.models import create_classifier
    m = load_config(None, ["model.sdpa_backend=math", "model.compile=true"]).model
    clf = create_classifier(str(tiny_dir), device="cpu", sdpa_backend=m.sdpa_backend, compile=m.compile)
    assert isinstance(clf, HFVideoClassifier) and clf.compile and clf.sdpa_backend == "math"
    with caplog.at_level("WARNING"):
        clf.load()
    assert clf.accelerator().sdpa_backend == "math" and not clf.accelerator().compiled
    assert "model.compile applies to CUDA devices" in caplog.text
    assert clf.predict(smooth_frames(16, 32, 32)[None]).shape == (1, 5)
    i3d = create_classifier("i3d-kinetics400", device="cpu", compile=True)
    assert i3d.compile                                   # (loading it is the I3D tests' business)


def test_sdpa_falls_back_to_eager(tmp_path: Path, offline: None) -> None:
    """TimeSformer has no SDPA attention; its 8-frame base recipe samples every 32nd frame."""
    clf = HFVideoClassifier(make_tiny_timesformer(tmp_path / "ts"), device="cpu", attn="sdpa")
    clf.load()
    assert clf.attn == "eager"
    assert clf.num_frames == 8
    assert clf.window_seconds == pytest.approx(8 * 32 / 30)
    assert clf.input_spec.mean == (0.45, 0.45, 0.45)
    probs = clf.predict(smooth_frames(8, 32, 32)[None])
    assert probs.shape == (1, 4)


def test_missing_local_dir(tmp_path: Path, offline: None) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelError, match="does not exist") as err:
        HFVideoClassifier(missing).load()
    assert str(missing) in str(err.value)


def test_local_dir_without_config(tmp_path: Path, offline: None) -> None:
    empty = tmp_path / "empty-model"
    empty.mkdir()
    with pytest.raises(ModelError, match="config.json") as err:
        HFVideoClassifier(empty).load()
    assert str(empty) in str(err.value)


def test_unreachable_hub_id_offline(offline: None) -> None:
    model_id = "example-org/videomae-not-cached"
    with pytest.raises(ModelError) as err:
        HFVideoClassifier(model_id).load()
    message = str(err.value)
    assert model_id in message
    assert "could not be reached" in message and "offline" in message
    assert "i3d-kinetics400" in message and "local directory" in message


def test_missing_processor_config_uses_defaults(tmp_path: Path, offline: None) -> None:
    """Without preprocessor_config.json: VideoMAE defaults (mean/std 0.5), sized to config.image_size."""
    model_dir = make_tiny_videomae(tmp_path / "no-processor")
    (model_dir / "preprocessor_config.json").unlink()
    clf = HFVideoClassifier(model_dir, device="cpu")
    clf.load()
    assert clf.input_spec == InputSpec(resize_short=32, crop=(32, 32), scale=1 / 255, mean=(0.5, 0.5, 0.5),
                                       std=(0.5, 0.5, 0.5), interpolation="pil_bilinear")


def test_not_a_video_classifier(tmp_path: Path, offline: None) -> None:
    from transformers import BertConfig

    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path)
    with pytest.raises(ModelError, match="not a video classifier"):
        HFVideoClassifier(tmp_path).load()


# --------------------------------------------------------------------------- prediction


def test_predict_shape_and_probabilities(tiny: HFVideoClassifier) -> None:
    clips = np.stack([smooth_frames(16, 32, 32, seed=s) for s in range(3)])
    probs = tiny.predict(clips)
    assert probs.shape == (3, len(LABELS)) and probs.dtype == np.float32
    assert np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert tiny.predict(clips[:0]).shape == (0, len(LABELS))


def test_predict_rejects_wrong_frame_size(tiny: HFVideoClassifier) -> None:
    with pytest.raises(ValueError, match="needs frames of"):
        tiny.predict(np.zeros((1, 16, 48, 48, 3), np.uint8))


def _reference_probs(model_dir: Path, model: torch.nn.Module, rgb_clips: np.ndarray) -> np.ndarray:
    """The plain transformers way: the checkpoint's own image processor, then the model."""
    processor = AutoImageProcessor.from_pretrained(model_dir)
    pixel_values = processor([list(clip) for clip in rgb_clips], return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        return torch.softmax(model(pixel_values=pixel_values).logits, dim=-1).numpy()


def test_predict_matches_transformers_without_resize(tiny_dir: Path, tiny: HFVideoClassifier) -> None:
    """Frames already at 32x32: identical pixels, so only float32 rounding may differ (1e-6)."""
    rgb = np.stack([smooth_frames(16, 32, 32, seed=s) for s in range(2)])
    ours = tiny.predict(np.stack([[prepare_frame(f[..., ::-1].copy(), tiny.input_spec) for f in c] for c in rgb]))
    np.testing.assert_allclose(ours, _reference_probs(tiny_dir, tiny.model, rgb), atol=1e-6)


def test_predict_matches_transformers_with_resize(tiny_dir: Path, tiny: HFVideoClassifier) -> None:
    """Frames of 90x120 (and 120x90) are resized by both paths. Pixels may differ by one uint8 level
    on a few positions (0.0175 normalised); a random 1-layer model maps that to well under 1e-3 in
    probability (measured: about 1e-5), and the ranking must agree."""
    for height, width in ((90, 120), (120, 90)):
        rgb = np.stack([smooth_frames(16, height, width, seed=10 + s) for s in range(2)])
        bgr = rgb[..., ::-1]
        ours = tiny.predict(np.stack([[prepare_frame(np.ascontiguousarray(f), tiny.input_spec) for f in c]
                                      for c in bgr]))
        ref = _reference_probs(tiny_dir, tiny.model, rgb)
        np.testing.assert_allclose(ours, ref, atol=1e-3)
        assert np.array_equal(ours.argmax(axis=1), ref.argmax(axis=1))


def test_predict_resamples_other_frame_counts(tiny: HFVideoClassifier) -> None:
    clip16 = smooth_frames(16, 32, 32, seed=3)
    clip32 = np.repeat(clip16, 2, axis=0)  # every frame twice: resampling to 16 must give clip16 back
    np.testing.assert_allclose(tiny.predict(clip32[None]), tiny.predict(clip16[None]), atol=1e-6)
    assert tiny.predict(clip16[::2][None]).shape == (1, len(LABELS))  # 8 -> 16 repeats frames


def test_resample_indices() -> None:
    assert resample_indices(32, 16).tolist() == list(range(1, 32, 2))
    assert resample_indices(8, 16).tolist() == [i // 2 for i in range(16)]
    assert resample_indices(16, 16).tolist() == list(range(16))
    assert resample_indices(20, 16).tolist() == sorted(resample_indices(20, 16).tolist())


# --------------------------------------------------------------------------- rules


def test_window_seconds_rule() -> None:
    class Cfg:
        def __init__(self, model_type: str, **extra: float) -> None:
            self.model_type = model_type
            self.__dict__.update(extra)

    assert window_seconds_for(Cfg("videomae"), 16) == pytest.approx(64 / 30)
    assert window_seconds_for(Cfg("vivit"), 32) == pytest.approx(64 / 30)
    assert window_seconds_for(Cfg("timesformer"), 8) == pytest.approx(256 / 30)
    assert window_seconds_for(Cfg("timesformer"), 16) == pytest.approx(256 / 30)
    assert window_seconds_for(Cfg("timesformer"), 96) == pytest.approx(384 / 30)
    assert window_seconds_for(Cfg("somethingnew"), 16) == pytest.approx(64 / 30)
    assert window_seconds_for(Cfg("videomae", frame_stride=2), 16) == pytest.approx(32 / 30)
    assert window_seconds_for(Cfg("videomae", window_seconds=3.0), 16) == 3.0
    assert window_seconds_for(Cfg("videomae"), 16, frame_stride=8) == pytest.approx(128 / 30)


def test_input_spec_from_processor_variants() -> None:
    spec = input_spec_from_processor({"size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 224},
                                      "image_mean": IMAGENET_DEFAULT_MEAN, "image_std": IMAGENET_DEFAULT_STD})
    assert spec == SPEC_224
    fixed = input_spec_from_processor({"size": {"height": 256, "width": 320}, "crop_size": 224})
    assert (fixed.resize_short, fixed.crop) == (256, (224, 224))
    assert input_spec_from_processor({"size": 224, "crop_size": 224}).resize_short == 224
    vivit = input_spec_from_processor({}, model_type="vivit")  # VivitImageProcessor defaults
    assert (vivit.resize_short, vivit.crop, vivit.scale, vivit.offset) == (256, (224, 224), 1 / 127.5, -1.0)
    assert input_spec_from_processor({"resample": 3}).interpolation == "pil_bicubic"
    raw = input_spec_from_processor({"do_rescale": False, "do_normalize": False})
    assert (raw.scale, raw.mean, raw.std) == (1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


# --------------------------------------------------------------------------- preprocessing


def test_hf_size_rounding() -> None:
    """HF truncates the long side; the "linear" (I3D) rule rounds, and must keep doing so."""
    assert hf_resized_size(256, 340, 224) == (224, 297)
    assert resized_size(256, 340, 224) == (224, 298)
    assert hf_resized_size(240, 320, 224) == (224, 298)
    assert hf_resized_size(720, 1280, 224) == (224, 398)
    assert hf_resized_size(1280, 720, 224) == (398, 224)


def test_linear_mode_unchanged() -> None:
    """The I3D path: cv2.INTER_LINEAR to the rounded size, centre crop, BGR->RGB, exactly."""
    bgr = smooth_frames(1, 240, 426, seed=5)[0]
    spec = InputSpec(resize_short=256, crop=(224, 224), interpolation="linear")
    expected = cv2.cvtColor(cv2.resize(bgr, (454, 256), interpolation=cv2.INTER_LINEAR)[16:240, 115:339],
                            cv2.COLOR_BGR2RGB)
    assert np.array_equal(prepare_frame(bgr, spec), expected)


@pytest.mark.parametrize("interpolation", ["linear", "area", "pil_bilinear", "pil_bicubic"])
def test_bgr_to_rgb(interpolation: str) -> None:
    red_bgr = np.zeros((48, 64, 3), np.uint8)
    red_bgr[..., 2] = 255  # pure red in OpenCV's BGR order
    spec = InputSpec(resize_short=32, crop=(32, 32), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                     interpolation=interpolation)
    rgb = prepare_frame(red_bgr, spec)
    assert rgb.shape == (32, 32, 3)
    assert np.all(rgb[..., 0] == 255) and np.all(rgb[..., 1:] == 0)
    x = normalize(rgb, spec)
    assert np.allclose(x[..., 0], 1.0) and np.allclose(x[..., 1:], -1.0)


@pytest.mark.parametrize("interpolation", ["linear", "pil_bilinear"])
def test_prepare_frame_into_out(interpolation: str) -> None:
    bgr = smooth_frames(1, 90, 160, seed=7)[0]
    spec = InputSpec(resize_short=64, crop=(64, 64), interpolation=interpolation)
    out = np.zeros((64, 64, 3), np.uint8)
    result = prepare_frame(bgr, spec, out)
    assert result is out
    assert np.array_equal(out, prepare_frame(bgr, spec))
    readonly = bgr.copy()
    readonly.flags.writeable = False
    assert np.array_equal(prepare_frame(readonly, spec), out)


def test_unknown_interpolation() -> None:
    with pytest.raises(ValueError, match="interpolation"):
        prepare_frame(np.zeros((48, 64, 3), np.uint8), InputSpec(32, (32, 32), interpolation="lanczos"))


def test_preprocessing_matches_videomae_processor_on_real_clips() -> None:
    """Our per-frame path vs VideoMAEImageProcessor (224 / 224 / ImageNet) on real decoded frames
    (454x256 .mp4, 340x256 .mp4, 426x240 .mkv, 320x240 .avi), plus the same frames at 1280x720
    where the 3.2x downscale makes antialiasing matter. Bound: one uint8 level."""
    clips = real_clips()
    if not clips:
        pytest.skip(f"real clips not found in {CLIPS_DIR} (shared/clips next to the repository)")
    report = []
    worst = 0.0
    for clip in clips:
        frames = read_frames(clip)
        upscaled = [cv2.resize(f, (1280, 720), interpolation=cv2.INTER_CUBIC) for f in frames]
        for tag, batch in ((f"{frames[0].shape[1]}x{frames[0].shape[0]}", frames), ("1280x720", upscaled)):
            biggest, frac = ours_vs_hf(batch)
            linear, _ = ours_vs_hf(batch, InputSpec(224, (224, 224), mean=SPEC_224.mean, std=SPEC_224.std))
            report.append(f"{clip.name} {tag}: max |diff| {biggest:.4f} ({frac:.3%} of values differ); "
                          f"cv2 linear would give {linear:.3f}")
            worst = max(worst, biggest)
            assert biggest <= PREPROCESS_BOUND, report[-1]
            assert frac < 0.01, report[-1]
    print("\n" + "\n".join(report) + f"\nlargest difference: {worst:.4f} normalised units")
