"""Model backends behind one ClipClassifier protocol, chosen by name.

``i3d-kinetics400`` is the embedded offline model; a directory with ``realtime_model.json``
is an I3D fine-tuned by ``realtime finetune``; any other name is a transformers checkpoint:
a local directory or a Hugging Face hub id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .base import ClipClassifier

I3D_NAME = "i3d-kinetics400"
BUILTIN_MODELS = {I3D_NAME: "Kinetics-400 I3D (Inception-v1, RGB), DeepMind weights; offline"}


def create_classifier(name: str, *, device: str = "auto", dtype: str = "auto",
                      cache_dir: Optional[str] = None, sdpa_backend: str = "auto",
                      compile: bool = False) -> ClipClassifier:
    """Build (not load) the classifier named ``name``. ``sdpa_backend``: the attention kernel of
    ``transformers`` models (see :data:`realtime.types.SDPA_BACKENDS`; I3D has no attention).
    ``compile``: ``torch.compile`` the network on CUDA (transformers models and the built-in I3D;
    a fine-tuned I3D runs as is)."""
    if name == I3D_NAME:
        from .i3d import I3DClassifier
        return I3DClassifier(device=device, dtype=dtype, cache_dir=cache_dir, compile=compile)
    if (Path(name).expanduser() / "realtime_model.json").is_file():   # `realtime finetune` output
        from .finetuned import FineTunedI3DClassifier
        return FineTunedI3DClassifier(name, device=device, dtype=dtype, cache_dir=cache_dir)
    from .hf import HFVideoClassifier
    return HFVideoClassifier(name, device=device, dtype=dtype, sdpa_backend=sdpa_backend, compile=compile)


__all__ = ["BUILTIN_MODELS", "ClipClassifier", "I3D_NAME", "create_classifier"]
