"""Fine-tune a video classifier on the user's own activities: one folder of clips per class.

``realtime finetune DATA --base M --out DIR`` (see :mod:`realtime.cli.finetune`) calls
:func:`finetune`. The pieces, in order:

Dataset (:func:`scan_dataset`, :func:`stratified_split`)
    ``DATA/<class>/<clip>`` (video files, sub-folders allowed); the class names are the
    folder names, sorted. Unreadable clips are skipped with a warning and counted. The
    train/validation split is stratified and seeded (the same data and seed give the
    same split), with at least one clip of each class on each side.

Views (:func:`read_clip`, :func:`make_view`, :class:`Augmentation`)
    A view is one model window cut from a clip: ``num_frames`` frames sampled at the
    model's frame rate (``num_frames / window_seconds``) by time, as the live
    pipeline samples them, resized and cropped with the model's
    :class:`~realtime.core.types.InputSpec`. Training views get temporal jitter (random
    window start, frame-rate jitter of +-15 %, frame order always kept), a random
    resized crop (scale and aspect jitter) and brightness/contrast jitter.
    Horizontal flip and time reversal change what a label means (``swiping left``
    becomes ``swiping right``, clockwise becomes anticlockwise), so they are off unless
    asked for. Validation views are unaugmented windows at the start, middle and end
    of the clip; a clip's prediction is the mean of its windows' probabilities, like
    ``realtime classify``.

Training, I3D base (``i3d-kinetics400``)
    ``cached`` mode (default without a GPU): the frozen part of I3D runs once per clip
    view (several augmented views per clip, made up front) and its outputs are cached
    in memory as float16: the ``Mixed_5c`` map (1024, T/8, 7, 7) and, for the default
    ``motion`` head, the motion map (480, T/8, 7, 7: the time-antisymmetric part of
    ``Mixed_3c``, see :mod:`realtime.models.finetuned_network`). Only the new head is trained
    on them (``split="Mixed_5c"``; with ``split="Mixed_4f"`` also ``Mixed_5b`` and
    ``Mixed_5c``, initialised from the Kinetics weights): about a second per epoch on a
    2-core CPU, so the time goes into the caching. ``full`` mode (default with a GPU,
    unless ``freeze_backbone``): every layer is trained on freshly augmented views each
    epoch. ``freeze_backbone``: only the head. The best epoch by validation accuracy is
    kept; training stops early after ``patience`` epochs without improvement. The
    output directory holds ``realtime_model.json`` and ``model.safetensors``
    (:mod:`realtime.models.finetuned`).

Training, transformers base (a local ``save_pretrained`` directory, e.g. VideoMAE)
    The classifier layer is re-initialised for the new labels, the model trained
    (only the head with ``freeze_backbone``) and saved with ``save_pretrained`` next
    to the base's image processor settings, so the output loads with the existing
    transformers backend unchanged.

Modules
    :mod:`~realtime.tools.finetune.dataset` (scanning, split),
    :mod:`~realtime.tools.finetune.views` (decoding, sampling, augmentation, views as
    tensors), :mod:`~realtime.tools.finetune.options` (options, result, summary),
    :mod:`~realtime.tools.finetune.training` (the shared training loop, device),
    :mod:`~realtime.tools.finetune.i3d` and :mod:`~realtime.tools.finetune.hf` (the two
    bases) and :mod:`~realtime.tools.finetune.run` (:func:`finetune`, the entry point).
    Names with a leading underscore are shared between these modules only.
"""

from realtime.tools.finetune.dataset import ClipFile, Dataset, probe_clip, scan_dataset, stratified_split
from realtime.tools.finetune.i3d import FeatureSet, cache_features
from realtime.tools.finetune.options import I3D_BASE, EvalResult, FineTuneOptions, FineTuneResult
from realtime.tools.finetune.run import finetune
from realtime.tools.finetune.views import (
    Augmentation,
    DecodedClip,
    crop_box,
    eval_positions,
    make_view,
    read_clip,
    window_indices,
)

__all__ = ["Augmentation", "ClipFile", "Dataset", "DecodedClip", "EvalResult", "FeatureSet", "FineTuneOptions",
           "FineTuneResult", "I3D_BASE", "cache_features", "crop_box", "eval_positions", "finetune", "make_view",
           "probe_clip", "read_clip", "scan_dataset", "stratified_split", "window_indices"]
