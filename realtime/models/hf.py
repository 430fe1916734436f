"""Hugging Face ``transformers`` backend: any ``AutoModelForVideoClassification`` checkpoint.

VideoMAE, TimeSformer, ViViT and other video classifiers load from a local directory
(``save_pretrained`` output) or a hub id. Everything the pipeline needs comes from the
checkpoint itself:

* ``labels``: ``config.id2label`` in index order.
* ``num_frames``: ``config.num_frames``.
* ``input_spec``: the checkpoint's image processor settings (``preprocessor_config.json``,
  read as a dict so no processor class, and no torchvision, is needed). ``size`` may be
  ``{"shortest_edge": N}`` (the usual case), ``{"height": H, "width": W}`` or a bare int;
  ``crop_size`` ``{"height", "width"}`` or an int. ``resample`` BILINEAR/BICUBIC maps to
  the ``"pil_bilinear"`` / ``"pil_bicubic"`` interpolation of :mod:`realtime.core.preprocess`,
  which reproduces the processor's antialiased resize and its size rounding.
* ``window_seconds``: the time a window spans at the training frame rate, see
  :func:`window_seconds_for`.

Per window, :meth:`HFVideoClassifier.predict` normalises with
:func:`realtime.core.preprocess.normalize` and feeds ``pixel_values`` (B, T, C, H, W).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Optional, TypeVar

import numpy as np

from realtime.core.errors import ConfigError, ModelError
from realtime.core.preprocess import normalize
from realtime.core.types import InputSpec

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from realtime.accel.fast_model import FastModel

logger = logging.getLogger(__name__)

OFFLINE_MODEL = "i3d-kinetics400"
"""The model that works without the hub; suggested when a hub model cannot be fetched."""

HUB_PROBE_TIMEOUT_S = 3.0
"""Seconds the one reachability check of the hub may take before a hub model is fetched."""

TRAINING_FPS = 30.0
"""Frame rate the strides below refer to: Kinetics videos are (mostly) 30 fps."""

FRAME_STRIDE: Mapping[str, int] = {
    # VideoMAE Kinetics fine-tuning/testing: 16 frames, every 4th frame ("16x4").
    "videomae": 4,
    # ViViT-B/16x2 Kinetics (scenic config): 32 frames, every 2nd frame.
    "vivit": 2,
    # TimeSformer base (TimeSformer_divST_8x32_224): 8 frames, every 32nd frame.
    "timesformer": 32,
}
"""Training frame stride per ``config.model_type`` (frames skipped between sampled frames)."""

FRAME_STRIDE_BY_NUM_FRAMES: Mapping[tuple[str, int], int] = {
    ("timesformer", 8): 32,  # facebook/timesformer-base-finetuned-k400 (8x32, 8.5 s)
    ("timesformer", 16): 16,  # facebook/timesformer-hr-finetuned-k400 (TimeSformer_divST_16x16_448, 8.5 s)
    ("timesformer", 96): 4,  # facebook/timesformer-large-finetuned-k400 (TimeSformer_divST_96x4_224, 12.8 s)
}
"""Overrides of :data:`FRAME_STRIDE` for model families whose variants differ by frame count."""

DEFAULT_FRAME_STRIDE = 4
"""Stride assumed for model types in neither table (the common "Nx4" Kinetics recipe)."""

_CONFIG_STRIDE_KEYS = ("frame_stride", "frame_sample_rate")
_CONFIG_WINDOW_KEY = "window_seconds"
_CONFIG_FPS_KEY = "training_fps"

_IMAGENET_STANDARD = (0.5, 0.5, 0.5)
_VIDEOMAE_PROCESSOR_DEFAULTS: Mapping[str, Any] = {
    # VideoMAEImageProcessor class defaults (also TimeSformer's image processor).
    "do_resize": True,
    "size": {"shortest_edge": 224},
    "resample": 2,  # PILImageResampling.BILINEAR
    "do_center_crop": True,
    "crop_size": {"height": 224, "width": 224},
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": _IMAGENET_STANDARD,
    "image_std": _IMAGENET_STANDARD,
}
PROCESSOR_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "videomae": _VIDEOMAE_PROCESSOR_DEFAULTS,
    "timesformer": _VIDEOMAE_PROCESSOR_DEFAULTS,
    # VivitImageProcessor defaults: short side 256, crop 224, x / 127.5 - 1.
    "vivit": {**_VIDEOMAE_PROCESSOR_DEFAULTS, "size": {"shortest_edge": 256}, "rescale_factor": 1 / 127.5,
              "offset": True},
}
"""Image processor settings a checkpoint's ``preprocessor_config.json`` may leave out, per model type."""

_RESAMPLE_TO_INTERPOLATION = {2: "pil_bilinear", 3: "pil_bicubic"}  # PILImageResampling BILINEAR, BICUBIC

T = TypeVar("T")


# --------------------------------------------------------------------------- rules


def frame_stride_for(model_type: str, num_frames: int) -> int:
    """Training frame stride for a model family: the per-(type, frames) table, the per-type table, else 4."""
    stride = FRAME_STRIDE_BY_NUM_FRAMES.get((model_type, num_frames), FRAME_STRIDE.get(model_type))
    if stride is None:
        logger.warning(
            "unknown video model type %r: assuming it was trained on every %dth frame at %g fps",
            model_type, DEFAULT_FRAME_STRIDE, TRAINING_FPS,
        )
        return DEFAULT_FRAME_STRIDE
    return stride


def window_seconds_for(config: Any, num_frames: int, frame_stride: Optional[int] = None) -> float:
    """Seconds a window of ``num_frames`` spans as the model saw it in training.

    One rule: ``num_frames * stride / fps``, with

    * ``config.window_seconds``, when present, taken as is;
    * stride: the ``frame_stride`` argument, else ``config.frame_stride`` /
      ``config.frame_sample_rate``, else :func:`frame_stride_for` (per-model-type table:
      VideoMAE 4, ViViT 2, TimeSformer 32 / 16 / 4 for its 8 / 16 / 96-frame variants,
      others 4);
    * fps: ``config.training_fps``, else 30 (Kinetics).

    So VideoMAE-Kinetics (16 frames) spans 16 * 4 / 30 = 2.13 s, ViViT-B (32 frames)
    2.13 s, TimeSformer-base (8 frames) and -HR (16) 8.53 s, TimeSformer-L (96) 12.8 s.
    Checkpoints trained with segment sampling over whole clips (e.g. Something-Something
    v2) have no fixed stride; pass ``frame_stride`` to choose one.
    """
    explicit = getattr(config, _CONFIG_WINDOW_KEY, None)
    if explicit:
        return float(explicit)
    stride = frame_stride
    if stride is None:
        stride = next((getattr(config, k) for k in _CONFIG_STRIDE_KEYS if getattr(config, k, None)), None)
    if stride is None:
        stride = frame_stride_for(str(getattr(config, "model_type", "")), num_frames)
    fps = float(getattr(config, _CONFIG_FPS_KEY, None) or TRAINING_FPS)
    return num_frames * int(stride) / fps


def default_processor_settings(model_type: str, image_size: Optional[int] = None) -> dict[str, Any]:
    """Processor settings for a checkpoint without ``preprocessor_config.json``: the model type's
    defaults (:data:`PROCESSOR_DEFAULTS`), resize and crop scaled to the model's ``image_size``."""
    settings = dict(PROCESSOR_DEFAULTS.get(model_type, _VIDEOMAE_PROCESSOR_DEFAULTS))
    if image_size:
        crop = _size_pair(settings["crop_size"], "crop_size")[0]
        short = int(settings["size"]["shortest_edge"])
        settings["size"] = {"shortest_edge": round(short * image_size / crop)}
        settings["crop_size"] = {"height": image_size, "width": image_size}
    return settings


def _square_image_size(config: Any) -> Optional[int]:
    """``config.image_size`` as one int (None if absent or not square)."""
    size = getattr(config, "image_size", None)
    if isinstance(size, (list, tuple)):
        size = size[0] if len(size) == 2 and size[0] == size[1] else None
    return int(size) if size else None


def _size_pair(value: Any, what: str) -> tuple[int, int]:
    """(height, width) from an int or a {"height", "width"} dict."""
    if isinstance(value, (int, float)):
        return int(value), int(value)
    if isinstance(value, Mapping) and "height" in value and "width" in value:
        return int(value["height"]), int(value["width"])
    raise ModelError(f"image processor {what} {value!r} is not an int or a {{'height', 'width'}} dict")


def _triple(value: Any, what: str) -> tuple[float, float, float]:
    if isinstance(value, (int, float)):
        return (float(value),) * 3
    values = tuple(float(v) for v in value)
    if len(values) != 3:
        raise ModelError(f"image processor {what} {value!r} must have 3 values (RGB)")
    return values  # type: ignore[return-value]


def input_spec_from_processor(
    settings: Mapping[str, Any], model_type: str = "", image_size: Optional[int] = None
) -> InputSpec:
    """The :class:`InputSpec` equivalent to an HF image processor's settings.

    ``settings`` is the ``preprocessor_config.json`` dict; keys it lacks come from
    :data:`PROCESSOR_DEFAULTS` for ``model_type`` (VideoMAE's otherwise). Where the
    processor does something frame-by-frame preprocessing cannot express, the closest
    equivalent is used and a warning logged:

    * ``size={"height": H, "width": W}`` resizes without keeping the aspect ratio; here the
      short side goes to ``min(H, W)`` (aspect kept) before the centre crop.
    * ``size`` with ``longest_edge``: the cap is ignored (only matters for extreme aspects).
    * ``do_resize=False`` / ``do_center_crop=False``: frames of any size must still come out
      at one size, so the short side is resized to the crop / the model's ``image_size``.
    """
    merged: dict[str, Any] = {**PROCESSOR_DEFAULTS.get(model_type, _VIDEOMAE_PROCESSOR_DEFAULTS)}
    merged.update({k: v for k, v in settings.items() if v is not None})

    # crop
    if merged.get("do_center_crop", True):
        crop = _size_pair(merged["crop_size"], "crop_size")
    else:
        side = image_size or _short_side(merged.get("size"), None)
        if side is None:
            raise ModelError("image processor has do_center_crop=false and no usable size; cannot pick a crop")
        crop = (int(side), int(side))
        logger.warning("image processor has do_center_crop=false; frames are centre cropped to %s anyway", crop)

    # resize
    if merged.get("do_resize", True):
        resize_short = _short_side(merged.get("size"), crop)
    else:
        resize_short = min(crop)
        logger.warning("image processor has do_resize=false; frames are resized to short side %d anyway",
                       resize_short)
    if resize_short < max(crop):
        raise ModelError(f"image processor resizes to short side {resize_short}, smaller than crop {crop}")

    # interpolation
    resample = merged.get("resample", 2)
    try:
        interpolation = _RESAMPLE_TO_INTERPOLATION[int(resample)]
    except (KeyError, TypeError, ValueError):
        interpolation = "pil_bilinear"
        logger.warning("image processor resample=%r is not supported; using antialiased bilinear", resample)

    # value transform: x * scale + offset, then (x - mean) / std
    if merged.get("do_rescale", True):
        scale = float(merged["rescale_factor"])
        offset = -1.0 if merged.get("offset") else 0.0
    else:
        scale, offset = 1.0, 0.0
    if merged.get("do_normalize", True):
        mean = _triple(merged["image_mean"], "image_mean")
        std = _triple(merged["image_std"], "image_std")
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return InputSpec(resize_short=resize_short, crop=crop, scale=scale, offset=offset, mean=mean, std=std,
                     interpolation=interpolation)


def _short_side(size: Any, crop: Optional[tuple[int, int]]) -> int:
    if isinstance(size, (int, float)):
        return int(size)
    if isinstance(size, Mapping):
        if size.get("shortest_edge"):
            if size.get("longest_edge"):
                logger.warning("image processor size %r: longest_edge is ignored", dict(size))
            return int(size["shortest_edge"])
        if size.get("height") and size.get("width"):
            h, w = int(size["height"]), int(size["width"])
            logger.warning(
                "image processor size %r resizes to a fixed shape without keeping the aspect ratio; "
                "here the short side is resized to %d (aspect kept) and then centre cropped",
                dict(size), min(h, w),
            )
            return min(h, w)
    if crop is not None:
        logger.warning("image processor size %r is not understood; resizing the short side to the crop", size)
        return min(crop)
    raise ModelError(f"image processor size {size!r} is not understood")


def resample_indices(num_in: int, num_out: int) -> np.ndarray:
    """Indices of ``num_out`` frames spread uniformly over ``num_in``: the frame nearest each
    of ``num_out`` equal time slots' centres (``floor((i + 0.5) * num_in / num_out)``).

    Subsampling keeps evenly spaced frames (32 -> 16 takes every 2nd, starting with the
    2nd); upsampling repeats frames (8 -> 16 shows each frame twice).
    """
    if num_in <= 0 or num_out <= 0:
        raise ValueError(f"cannot resample {num_in} frames to {num_out}")
    return ((np.arange(num_out) + 0.5) * num_in / num_out).astype(np.int64)


# --------------------------------------------------------------------------- hub errors


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) offline mode is on."""
    try:
        from huggingface_hub import constants

        if constants.is_offline_mode():
            return True
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        pass
    return any(os.environ.get(k, "").strip().upper() in {"1", "ON", "YES", "TRUE"}
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is_connection_error(exc: BaseException) -> bool:
    """True if ``exc`` (or what caused it) means the hub could not be reached / offline mode."""
    try:
        from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled
        hub_types: tuple[type[BaseException], ...] = (LocalEntryNotFoundError, OfflineModeIsEnabled)
    except ImportError:  # pragma: no cover
        hub_types = ()
    net_types: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
    for module in ("httpx2", "httpx"):   # huggingface_hub >= 2 uses httpx2, 1.x httpx
        try:
            net_types += (__import__(module).TransportError,)
        except (ImportError, AttributeError):
            pass
    for e in _exception_chain(exc):
        if isinstance(e, hub_types + net_types):
            return True
        if "couldn't connect" in str(e) or "offline mode" in str(e).lower():
            return True
    return False


def _is_repo_not_found(exc: BaseException) -> bool:
    try:
        from huggingface_hub.errors import RepositoryNotFoundError
    except ImportError:  # pragma: no cover
        return False
    return any(isinstance(e, RepositoryNotFoundError) for e in _exception_chain(exc))


def hub_endpoint() -> str:
    """The hub that model files are fetched from (``HF_ENDPOINT``, default https://huggingface.co)."""
    from urllib.parse import urlsplit

    from huggingface_hub import hf_hub_url

    parts = urlsplit(hf_hub_url("owner/name", "config.json"))   # the host downloads really go to
    return f"{parts.scheme}://{parts.netloc}"


def hub_unreachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> Optional[str]:
    """Why the hub cannot be reached, or None when it answers.

    One HEAD of the endpoint, no retries, through huggingface_hub's own HTTP client (so the
    same proxies, certificates and ``HF_ENDPOINT``). Any HTTP answer counts as reachable.
    Needed because ``hf_hub_download``, when a file is neither reachable nor cached, retries
    the request 5 more times with 1-8 s back-off (about 25 s) before giving up."""
    from huggingface_hub.utils import get_session

    url = hub_endpoint()
    try:
        get_session().head(url, timeout=timeout, follow_redirects=False)
    except Exception as exc:  # httpx2.TransportError and friends: DNS, refused, timeout, TLS, proxy
        logger.debug("hub probe of %s failed: %r", url, exc)
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return None


def _in_hub_cache(repo_id: str) -> bool:
    """Whether the hub cache holds the config of ``repo_id`` (so loading it offline may work)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # a malformed cache entry: let transformers report it
        return False


def _offline_message(model_id: str, reason: Optional[str] = None) -> str:
    if hub_offline():
        why = "offline mode is on (HF_HUB_OFFLINE=1), so the Hugging Face Hub could not be reached"
    elif reason:
        why = f"the Hugging Face Hub at {hub_endpoint()} could not be reached ({reason})"
    else:
        why = "the Hugging Face Hub could not be reached"
    return (
        f"cannot load Hugging Face model '{model_id}': {why} and the model is not in the local cache. "
        f"Use the offline model '{OFFLINE_MODEL}', or pass a local directory holding a saved model "
        "(config.json, weights, preprocessor_config.json)."
    )


# --------------------------------------------------------------------------- model names


def _looks_like_path(text: str) -> bool:
    """Whether ``text`` (which does not exist) was meant as a local path, not a hub id."""
    if (os.path.isabs(text) or text.startswith((".", "~")) or text.endswith(("/", os.sep))
            or text.count("/") > 1 or (os.sep != "/" and os.sep in text)):
        return True
    # "models/my-videomae" where ./models exists: a missing directory, not the hub id models/my-videomae
    return "/" in text and Path(text).expanduser().parent.is_dir()


def model_source(model_id: str) -> tuple[str, bool]:
    """(path or hub id, is_local) for a transformers model name, checked without the network.

    Raises ModelError for a local path that is missing, a file, or lacks config.json, and
    ConfigError for a name that is no valid hub id (``name`` or ``owner/name``)."""
    path = Path(model_id).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(
                f"model directory '{path}' has no config.json; it must hold a transformers "
                "save_pretrained() checkpoint (config.json, weights, preprocessor_config.json)"
            )
        return str(path), True
    if path.exists():
        raise ModelError(f"model path '{path}' is a file; expected a model directory or a hub id")
    if _looks_like_path(model_id):
        raise ModelError(f"model directory not found: {os.path.expanduser(model_id)} (the path does not exist)")
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(model_id)
    except HFValidationError as exc:
        raise ConfigError(
            f"invalid model name '{model_id}': not '{OFFLINE_MODEL}', not an existing directory and not a "
            f"Hugging Face hub id (owner/name, letters, digits, '-', '_', '.'): {exc}"
        ) from None
    return model_id, False


# --------------------------------------------------------------------------- classifier


class HFVideoClassifier:
    """ClipClassifier for any ``transformers`` ``AutoModelForVideoClassification`` checkpoint.

    ``model_id_or_dir``: a local ``save_pretrained`` directory or a hub id.
    ``device``: ``"auto"`` (CUDA if available, else CPU) or a torch device string.
    ``dtype``: ``"auto"`` (bfloat16 on CUDA, float16 where the GPU lacks bf16, float32 on
    CPU), or ``"float32"``/``"bfloat16"``/``"float16"`` (``fp32``/``bf16``/``fp16``).
    ``attn``: ``attn_implementation``; ``"sdpa"`` falls back to ``"eager"`` (with a
    warning) for models without SDPA support, e.g. TimeSformer.
    ``frame_stride``: training frame stride override for ``window_seconds``.

    Construction only stores settings. ``labels``, ``num_frames``, ``window_seconds`` and
    ``input_spec`` hold placeholders (empty / 0) until :meth:`load`, which also resolves
    ``device`` to the device actually used.
    """

    def __init__(
        self,
        model_id_or_dir: str | os.PathLike[str],
        device: str = "auto",
        dtype: str = "auto",
        attn: str = "sdpa",
        *,
        frame_stride: Optional[int] = None,
        cuda_graphs: Optional[bool] = None,
        sdpa_backend: str = "auto",
        compile: bool = False,
    ) -> None:
        self.model_id = os.fspath(model_id_or_dir)
        self.cuda_graphs = cuda_graphs            # None: on for CUDA devices
        self.sdpa_backend = sdpa_backend          # which SDPA kernel (realtime.core.types.SDPA_BACKENDS)
        self.compile = compile                    # torch.compile the forward (FastModel)
        self._fast: Optional["FastModel"] = None  # runs the network after load()
        self.name = self.model_id
        self.requested_device = device
        self.requested_dtype = dtype
        self.requested_attn = attn
        self.frame_stride = frame_stride
        # valid after load()
        self.device: str = device
        self.dtype: Optional["torch.dtype"] = None
        self.attn: str = attn
        self.labels: tuple[str, ...] = ()
        self.num_frames: int = 0
        self.window_seconds: float = 0.0
        self.input_spec: InputSpec = InputSpec(resize_short=0, crop=(0, 0))
        self.config: Any = None
        self.processor_settings: dict[str, Any] = {}
        self._model: Any = None

    def __repr__(self) -> str:
        state = f"device={self.device!r}, dtype={self.dtype}, attn={self.attn!r}" if self.loaded else "not loaded"
        return f"HFVideoClassifier({self.model_id!r}, {state})"

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def model(self) -> Any:
        """The underlying ``transformers`` model (after :meth:`load`)."""
        return self._require_model()

    # ---------------------------------------------------------------- loading

    def _source(self) -> tuple[str, bool]:
        """(path or id, is_local); see :func:`model_source`."""
        return model_source(self.model_id)

    def _hub_call(self, what: str, fn: Callable[[], T]) -> T:
        """Run a transformers loading call, turning its failures into ModelError."""
        try:
            return fn()
        except ModelError:
            raise
        except Exception as exc:
            if _is_connection_error(exc):
                raise ModelError(_offline_message(self.model_id)) from exc
            if _is_repo_not_found(exc):
                raise ModelError(
                    f"'{self.model_id}' is neither a local model directory nor a model on the Hugging Face Hub"
                ) from exc
            raise ModelError(f"cannot load the {what} of Hugging Face model '{self.model_id}': {exc}") from exc

    def _load_processor_settings(self, src: str, hub_kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The checkpoint's image processor settings as a dict, or {} if it has none."""
        from transformers.image_processing_base import ImageProcessingMixin

        for filename in ("preprocessor_config.json", "video_preprocessor_config.json"):
            try:
                settings, _ = ImageProcessingMixin.get_image_processor_dict(
                    src, image_processor_filename=filename, **hub_kwargs
                )
                logger.debug("image processor settings of %s from %s: %s", self.model_id, filename, settings)
                return dict(settings)
            except Exception as exc:
                if _is_connection_error(exc) and not hub_kwargs.get("local_files_only"):
                    raise ModelError(_offline_message(self.model_id)) from exc
                logger.debug("no %s for %s: %s", filename, self.model_id, exc)
        return {}

    def load(self) -> None:
        """Read config, labels, image processor settings and weights; move the model to the device.

        Loading twice is a no-op (``realtime eval`` classifies many files with one model)."""
        if self._model is not None:
            return
        src, local = self._source()   # name errors first: before the network and the transformers import
        offline = local or hub_offline()
        if not offline:
            reason = hub_unreachable()
            if reason is not None:
                if not _in_hub_cache(src):
                    raise ModelError(_offline_message(self.model_id, reason))
                logger.warning("the Hugging Face Hub at %s cannot be reached (%s); loading %s from the local cache",
                               hub_endpoint(), reason, self.model_id)
                offline = True
        hub_kwargs: dict[str, Any] = {"local_files_only": True} if offline else {}
        from transformers import AutoConfig, AutoModelForVideoClassification
        from transformers.models.auto.modeling_auto import MODEL_FOR_VIDEO_CLASSIFICATION_MAPPING_NAMES

        config = self._hub_call("config", lambda: AutoConfig.from_pretrained(src, **hub_kwargs))
        model_type = str(getattr(config, "model_type", ""))
        if model_type not in MODEL_FOR_VIDEO_CLASSIFICATION_MAPPING_NAMES:
            raise ModelError(
                f"'{self.model_id}' is a {model_type or 'unknown'} model, not a video classifier; supported types: "
                + ", ".join(sorted(MODEL_FOR_VIDEO_CLASSIFICATION_MAPPING_NAMES))
            )

        labels = _labels_from_config(config, self.model_id)
        num_frames = int(getattr(config, "num_frames", 0) or 0)
        if num_frames <= 0:
            raise ModelError(f"config of '{self.model_id}' has no num_frames; cannot size the windows")
        image_size = _square_image_size(config)
        settings = self._load_processor_settings(src, hub_kwargs)
        if not settings:
            settings = default_processor_settings(model_type, image_size)
            logger.warning("%s has no preprocessor_config.json; using the %s image processor defaults %s",
                           self.model_id, model_type, settings)
        spec = input_spec_from_processor(settings, model_type, image_size)
        window = window_seconds_for(config, num_frames, self.frame_stride)

        from realtime.accel.device import resolve_device, resolve_dtype
        device = resolve_device(self.requested_device)
        dtype = resolve_dtype(self.requested_dtype, device)
        model, attn = self._load_model(AutoModelForVideoClassification, src, hub_kwargs, dtype)
        model = model.to(device).eval()
        from realtime.accel.fast_model import FastModel, compile_on, hf_forward
        # Also moves plain tensor attributes (VideoMAE's position table) to the device, and on
        # CUDA replays the forward as a CUDA graph per batch size.
        fast = FastModel(model, hf_forward(model), (num_frames, 3, *spec.crop), device=device,
                         dtype=None, sdpa=False, cuda_graphs=self.cuda_graphs,
                         sdpa_backend=self.sdpa_backend if attn == "sdpa" else "auto",
                         compile=compile_on(device, self.compile, self.model_id))

        self.config = config
        self.processor_settings = settings
        self.labels = labels
        self.num_frames = num_frames
        self.window_seconds = window
        self.input_spec = spec
        self.device = str(device)
        self.dtype = dtype
        self.attn = attn
        self._model = model
        self._fast = fast
        logger.info(
            "loaded %s (%s, %d labels): %d frames / %.2f s windows, device=%s dtype=%s attn=%s, input %s",
            self.model_id, model_type, len(labels), num_frames, window, self.device,
            str(dtype).removeprefix("torch."), attn, spec,
        )

    def _load_model(self, auto_cls: Any, src: str, hub_kwargs: Mapping[str, Any],
                    dtype: Optional["torch.dtype"]) -> tuple[Any, str]:
        attn = self.requested_attn

        def load(implementation: str) -> Any:
            return auto_cls.from_pretrained(src, dtype=dtype, attn_implementation=implementation, **hub_kwargs)

        try:
            model = self._hub_call("weights", lambda: load(attn))
        except ModelError as exc:
            cause = exc.__cause__
            unsupported = isinstance(cause, ValueError) and (
                "scaled_dot_product_attention" in str(cause) or "attn_implementation" in str(cause)
            )
            if attn == "eager" or not unsupported:
                raise
            logger.warning("%s does not support attn_implementation=%r; using 'eager'", self.model_id, attn)
            attn = "eager"
            model = self._hub_call("weights", lambda: load(attn))
        return model, str(getattr(model.config, "_attn_implementation", None) or attn)

    # ---------------------------------------------------------------- inference

    def accelerator(self) -> Optional["FastModel"]:
        """The :class:`~realtime.accel.fast_model.FastModel` that runs the network (None before
        :meth:`load`): the pipeline's device path fills its input buffer and runs it directly."""
        return self._fast

    def _require_fast(self) -> "FastModel":
        self._require_model()
        assert self._fast is not None
        return self._fast

    def _require_model(self) -> Any:
        if self._model is None:
            raise ModelError(f"Hugging Face model '{self.model_id}' is not loaded; call load() first")
        return self._model

    def predict(self, clips: np.ndarray) -> np.ndarray:
        """Class probabilities for a batch of clips.

        ``clips``: (B, T, H, W, 3) uint8 RGB, (H, W) == ``input_spec.crop``. When T differs
        from ``num_frames`` the clip is resampled uniformly in time to ``num_frames``
        (:func:`resample_indices`). Returns (B, len(labels)) float32 softmax probabilities.
        """
        import torch

        self._require_model()
        x = np.asarray(clips)
        if x.ndim != 5 or x.shape[-1] != 3:
            raise ValueError(f"expected clips of shape (B, T, H, W, 3), got {x.shape}")
        if x.dtype != np.uint8:
            raise ValueError(f"expected uint8 clips, got {x.dtype}")
        if tuple(x.shape[2:4]) != tuple(self.input_spec.crop):
            raise ValueError(f"clips are {x.shape[2:4]} but {self.name} needs frames of {self.input_spec.crop}")
        if x.shape[0] == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        if x.shape[1] != self.num_frames:
            logger.debug("resampling %d frames to the %d %s was trained on", x.shape[1], self.num_frames, self.name)
            x = x[:, resample_indices(x.shape[1], self.num_frames)]
        pixels = normalize(x, self.input_spec)  # (B, T, H, W, 3) float32
        pixel_values = torch.from_numpy(pixels).permute(0, 1, 4, 2, 3)   # (B, T, C, H, W)
        return self._require_fast().predict(pixel_values)


def _labels_from_config(config: Any, model_id: str) -> tuple[str, ...]:
    id2label = getattr(config, "id2label", None) or {}
    mapping = {int(k): str(v) for k, v in id2label.items()}
    n = int(getattr(config, "num_labels", 0) or len(mapping))
    missing = [i for i in range(n) if i not in mapping]
    if n <= 0 or missing:
        raise ModelError(f"config of '{model_id}' has no label name for class(es) {missing[:5] or [0]} in id2label")
    labels = tuple(mapping[i] for i in range(n))
    if all(label == f"LABEL_{i}" for i, label in enumerate(labels)):
        logger.warning("%s has no label names in id2label (LABEL_0..LABEL_%d)", model_id, n - 1)
    return labels
