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
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, TypeVar

import numpy as np

from realtime.core.errors import ModelError
from realtime.core.preprocess import normalize
from realtime.core.types import InputSpec
from realtime.models.hf_inputs import (
    default_processor_settings,
    input_spec_from_processor,
    resample_indices,
    square_image_size,
    window_seconds_for,
)
from realtime.models.hub import (
    hub_endpoint,
    hub_offline,
    hub_unreachable,
    in_hub_cache,
    is_connection_error,
    is_repo_not_found,
    model_source,
    offline_message,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from realtime.accel.fast_model import FastModel
    from realtime.models.base import Runner

logger = logging.getLogger(__name__)

T = TypeVar("T")


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
        engine: str = "auto",
        int8: bool = False,
    ) -> None:
        self.model_id = os.fspath(model_id_or_dir)
        self.requested_engine = engine
        self.engine = engine                      # "torch" or "openvino" after load()
        self.int8 = int8                          # OpenVINO's quantised model (realtime models quantize)
        self._runner: Optional["Runner"] = None   # what runs the network: _fast, or OpenVINO
        self._scorer: Any = None                  # probabilities and pooled features, made on first use
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
            if is_connection_error(exc):
                raise ModelError(offline_message(self.model_id)) from exc
            if is_repo_not_found(exc):
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
                if is_connection_error(exc) and not hub_kwargs.get("local_files_only"):
                    raise ModelError(offline_message(self.model_id)) from exc
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
                if not in_hub_cache(src):
                    raise ModelError(offline_message(self.model_id, reason))
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
        image_size = square_image_size(config)
        settings = self._load_processor_settings(src, hub_kwargs)
        if not settings:
            settings = default_processor_settings(model_type, image_size)
            logger.warning("%s has no preprocessor_config.json; using the %s image processor defaults %s",
                           self.model_id, model_type, settings)
        spec = input_spec_from_processor(settings, model_type, image_size)
        window = window_seconds_for(config, num_frames, self.frame_stride)

        import torch

        from realtime.accel.device import resolve_device, resolve_dtype
        from realtime.accel.fast_model import FastModel, compile_on, hf_forward
        from realtime.accel.openvino_model import resolve_engine, try_openvino
        device = resolve_device(self.requested_device)
        engine = resolve_engine(self.requested_engine, device, int8=self.int8)
        # OpenVINO converts the float32 network and picks its precision when compiling.
        torch_dtype = resolve_dtype(self.requested_dtype, device) if engine == "torch" else None
        loaded_dtype = torch_dtype if torch_dtype is not None else torch.float32
        model, attn = self._load_model(AutoModelForVideoClassification, src, hub_kwargs, loaded_dtype)
        model = model.to(device).eval()
        window_shape = (num_frames, 3, *spec.crop)
        runner: Optional["Runner"] = None
        if engine == "openvino":
            runner = try_openvino(model, hf_forward(model), window_shape, name=self.model_id,
                                  dtype=self.requested_dtype, int8=self.int8)
            if runner is None:
                engine = "torch"
        fast = None
        if runner is None:
            dtype = torch_dtype if torch_dtype is not None else resolve_dtype(self.requested_dtype, device)
            # Also moves plain tensor attributes (VideoMAE's position table) to the device, and on
            # CUDA replays the forward as a CUDA graph per batch size.
            runner = fast = FastModel(model, hf_forward(model), window_shape, device=device,
                                      dtype=None if dtype == loaded_dtype else dtype, sdpa=False,
                                      cuda_graphs=self.cuda_graphs,
                                      sdpa_backend=self.sdpa_backend if attn == "sdpa" else "auto",
                                      compile=compile_on(device, self.compile, self.model_id))
        else:
            dtype = runner.dtype

        self.config = config
        self.processor_settings = settings
        self.labels = labels
        self.num_frames = num_frames
        self.window_seconds = window
        self.input_spec = spec
        self.device = str(device)
        self.dtype = dtype
        self.attn = attn
        self.engine = engine
        self._model = model
        self._fast = fast
        self._runner = runner
        logger.info(
            "loaded %s (%s, %d labels): %d frames / %.2f s windows, device=%s engine=%s dtype=%s attn=%s, input %s",
            self.model_id, model_type, len(labels), num_frames, window, self.device, engine,
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

    @property
    def runner(self) -> Optional["Runner"]:
        """What runs the network after :meth:`load`: a FastModel (torch) or an OpenVINOModel."""
        return self._runner

    @property
    def window_shape(self) -> tuple[int, ...]:
        """One window as the network takes it: (T, C, H, W)."""
        return (self.num_frames, 3, *self.input_spec.crop)

    def network(self) -> tuple[Any, Any, tuple[int, ...]]:
        """The torch network (after :meth:`load`), its ``(B, T, C, H, W) -> logits`` adapter and one
        window's (T, C, H, W): what an engine converts (``realtime models quantize``)."""
        from realtime.accel.fast_model import hf_forward
        model = self._require_model()
        return model, hf_forward(model), self.window_shape

    def _require_runner(self) -> "Runner":
        self._require_model()
        assert self._runner is not None
        return self._runner

    def _require_model(self) -> Any:
        if self._model is None:
            raise ModelError(f"Hugging Face model '{self.model_id}' is not loaded; call load() first")
        return self._model

    def _pixel_values(self, clips: np.ndarray) -> Optional["torch.Tensor"]:
        """``clips`` checked, resampled to ``num_frames`` and normalised: (B, T, C, H, W) float32,
        or None for an empty batch."""
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
            return None
        if x.shape[1] != self.num_frames:
            logger.debug("resampling %d frames to the %d %s was trained on", x.shape[1], self.num_frames, self.name)
            x = x[:, resample_indices(x.shape[1], self.num_frames)]
        pixels = normalize(x, self.input_spec)  # (B, T, H, W, 3) float32
        return torch.from_numpy(pixels).permute(0, 1, 4, 2, 3)   # (B, T, C, H, W)

    def predict(self, clips: np.ndarray) -> np.ndarray:
        """Class probabilities for a batch of clips.

        ``clips``: (B, T, H, W, 3) uint8 RGB, (H, W) == ``input_spec.crop``. When T differs
        from ``num_frames`` the clip is resampled uniformly in time to ``num_frames``
        (:func:`resample_indices`). Returns (B, len(labels)) float32 softmax probabilities.
        """
        pixel_values = self._pixel_values(clips)
        if pixel_values is None:
            return np.zeros((0, len(self.labels)), np.float32)
        return self._require_runner().predict(pixel_values)

    def embed(self, clips: np.ndarray) -> np.ndarray:
        """The pooled features of each clip (the last hidden state averaged over its tokens):
        (B, hidden) float32, on the classifier's engine: :meth:`predict_embed`'s features. Clips as
        for :meth:`predict`."""
        return self.predict_embed(clips)[1]

    def predict_embed(self, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities and pooled features from one pass of the network (``realtime
        index``); clips as for :meth:`predict`."""
        pixel_values = self._pixel_values(clips)
        if pixel_values is None:
            return (np.zeros((0, len(self.labels)), np.float32),
                    np.zeros((0, int(getattr(self.config, "hidden_size", 0) or 0)), np.float32))
        if self._scorer is None:
            from realtime.accel.fast_model import hf_logits_pooled_forward
            from realtime.models.embedding import Embedder
            model = self._require_model()
            self._scorer = Embedder(model, hf_logits_pooled_forward(model), self.window_shape, engine=self.engine,
                                    name=self.model_id, dtype=self.requested_dtype)
        logits, features = self._scorer.outputs(pixel_values)
        from realtime.models.embedding import softmax
        return softmax(logits), features


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
