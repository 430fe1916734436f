"""``realtime eval``: measure a model's accuracy on a labelled set of video clips.

A data set is either a folder with one sub-folder of clips per class (the
sub-folder's name is the class) or a CSV file of ``path,label`` rows. Its labels
are matched to the model's labels ignoring case, spaces, underscores and hyphens
(``arm_wrestling`` is ``arm wrestling``), or through a mapping file; every label
is checked before the first clip is classified.

Each clip is classified whole with :func:`realtime.tools.classify.classify_file` (the
model is loaded once and shared by every clip); a clip that cannot be read is
skipped and listed in the report. The metrics come from :mod:`realtime.core.metrics`.

The parts, one module each: :mod:`~realtime.tools.evaluate.dataset` (reading the
data set, matching its labels to the model's), :mod:`~realtime.tools.evaluate.run`
(classifying every clip: :func:`evaluate`), :mod:`~realtime.tools.evaluate.report`
(the results, their table and the report files) and
:mod:`~realtime.tools.evaluate.confusion` (drawing the confusion matrix).
"""

from realtime.tools.evaluate.confusion import draw_confusion
from realtime.tools.evaluate.dataset import (
    Dataset,
    Sample,
    load_dataset,
    match_labels,
    normalize_label,
    read_label_map,
)
from realtime.tools.evaluate.report import ClipOutcome, EvalReport, Skipped, prepare_report_dir, write_report
from realtime.tools.evaluate.run import OTHER_LABEL, SharedClassifier, evaluate

__all__ = ["OTHER_LABEL", "ClipOutcome", "Dataset", "EvalReport", "Sample", "SharedClassifier", "Skipped",
           "draw_confusion", "evaluate", "load_dataset", "match_labels", "normalize_label", "prepare_report_dir",
           "read_label_map", "write_report"]
