"""Model backends behind one ClipClassifier protocol, chosen by name.

``i3d-kinetics400`` is the embedded offline model; a directory with ``realtime_model.json``
is an I3D fine-tuned by ``realtime finetune``; any other name is a transformers checkpoint:
a local directory or a Hugging Face hub id.
"""

from __future__ import annotations

import difflib
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from realtime.core.errors import ConfigError
from realtime.models.base import Accelerated, ClipClassifier, accelerator_of

if TYPE_CHECKING:  # pragma: no cover
    from realtime.config import ModelConfig

logger = logging.getLogger(__name__)

I3D_NAME = "i3d-kinetics400"
BUILTIN_MODELS = {I3D_NAME: "Kinetics-400 I3D (Inception-v1, RGB), DeepMind weights; offline"}


def _squash(name: str) -> str:
    return re.sub(r"[\s_.\-]+", "", name.lower())


def near_builtin(name: str) -> Optional[str]:
    """The built-in model a bare ``name`` most likely misspells, or None.

    Matches ignoring case and separators (``I3D_Kinetics400``), a close spelling
    (``i3d-kinetic400``) or a prefix of at least 3 characters (``i3d``). Names with an owner
    (``owner/name``) are hub ids and never match."""
    if "/" in name or name in BUILTIN_MODELS:
        return None
    key = _squash(name)
    for builtin in BUILTIN_MODELS:
        if key == _squash(builtin) or (len(key) >= 3 and _squash(builtin).startswith(key)):
            return builtin
    close = difflib.get_close_matches(name.lower(), list(BUILTIN_MODELS), n=1, cutoff=0.8)
    return close[0] if close else None


def create_classifier(name: str, *, device: str = "auto", dtype: str = "auto",
                      cache_dir: Optional[str] = None, sdpa_backend: str = "auto",
                      compile: bool = False, engine: str = "auto",
                      num_frames: Optional[int] = None) -> ClipClassifier:
    """Build (not load) the classifier named ``name``. ``sdpa_backend``: the attention kernel of
    ``transformers`` models (see :data:`realtime.core.types.SDPA_BACKENDS`; I3D has no attention).
    ``compile``: ``torch.compile`` the network on CUDA (transformers models and the built-in I3D;
    a fine-tuned I3D runs as is). ``engine``: what runs the network (see
    :data:`realtime.core.types.ENGINES`); a fine-tuned I3D always runs on torch. ``dtype`` takes
    what ``model.precision`` does: with ``"int8"`` the model ``realtime models quantize`` made
    runs on OpenVINO. ``num_frames``: the built-in I3D's window length (consecutive frames at
    25 fps; its network, and an engine's converted model, are built for it); other models keep
    the length they were trained on and resample windows of another length."""
    int8 = str(dtype).lower() == "int8"     # model.precision int8: OpenVINO's quantised model
    if int8:
        dtype = "auto"
    if name == I3D_NAME:
        from realtime.models.i3d import DEFAULT_NUM_FRAMES, MIN_FRAMES, I3DClassifier
        if num_frames is not None and num_frames < MIN_FRAMES:
            raise ConfigError(f"model.num_frames {num_frames}: {I3D_NAME} needs at least {MIN_FRAMES} frames")
        return I3DClassifier(device=device, dtype=dtype, cache_dir=cache_dir, compile=compile, engine=engine,
                             int8=int8, num_frames=num_frames or DEFAULT_NUM_FRAMES)
    path = Path(name).expanduser()
    if (path / "realtime_model.json").is_file():   # `realtime finetune` output
        from realtime.models.finetuned import FineTunedI3DClassifier
        if int8:
            raise ConfigError(f"model.precision int8: {name} is a fine-tuned I3D, which runs on torch "
                              "(float32 or bfloat16)")
        if engine == "openvino":
            logger.warning("model.engine openvino: %s is a fine-tuned I3D, which runs on torch", name)
        return FineTunedI3DClassifier(name, device=device, dtype=dtype, cache_dir=cache_dir)
    # A typo of a built-in name would otherwise go to the hub: say so now, without the network.
    suggestion = None if path.exists() else near_builtin(name)
    if suggestion is not None:
        raise ConfigError(f"unknown model '{name}': did you mean '{suggestion}'? (built in: "
                          f"{', '.join(BUILTIN_MODELS)}; else a model directory or a Hugging Face hub id)")
    from realtime.models.hf import HFVideoClassifier
    from realtime.models.hub import model_source
    model_source(name)   # a missing directory or a malformed hub id fails here, not at load()
    return HFVideoClassifier(name, device=device, dtype=dtype, sdpa_backend=sdpa_backend, compile=compile,
                             engine=engine, int8=int8)


def classifier_for(model: "ModelConfig") -> ClipClassifier:
    """:func:`create_classifier` with the settings of a configuration's ``model`` section."""
    return create_classifier(model.name, device=model.device, dtype=model.precision, sdpa_backend=model.sdpa_backend,
                             compile=model.compile, engine=model.engine, num_frames=model.num_frames)


__all__ = ["Accelerated", "BUILTIN_MODELS", "ClipClassifier", "I3D_NAME", "accelerator_of", "classifier_for",
           "create_classifier", "near_builtin"]
