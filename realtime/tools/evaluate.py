"""``realtime eval``: measure a model's accuracy on a labelled set of video clips.

A data set is either a folder with one sub-folder of clips per class (the
sub-folder's name is the class) or a CSV file of ``path,label`` rows. Its labels
are matched to the model's labels ignoring case, spaces, underscores and hyphens
(``arm_wrestling`` is ``arm wrestling``), or through a mapping file; every label
is checked before the first clip is classified.

Each clip is classified whole with :func:`realtime.tools.classify.classify_file` (the
model is loaded once and shared by every clip); a clip that cannot be read is
skipped and listed in the report. The metrics come from :mod:`realtime.core.metrics`.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import json
import logging
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import cv2
import numpy as np
import yaml

from realtime.tools.clipfolders import VIDEO_EXTENSIONS, scan_class_folders
from realtime.config import Config
from realtime.core.errors import ConfigError, RealtimeError, SinkError, SourceError
from realtime.core.metrics import ClassificationMetrics, classification_metrics, top_k_accuracy
from realtime.models import ClipClassifier, create_classifier
from realtime.core.types import InputSpec

log = logging.getLogger(__name__)

OTHER_LABEL = "other"
_CSV_HEADER_PATH = {"path", "file", "filename", "file_name", "video", "clip"}
_CSV_HEADER_LABEL = {"label", "class", "category", "activity"}


# --------------------------------------------------------------------------- data set
@dataclass(frozen=True)
class Sample:
    """One clip of the data set and its (data set) label."""

    path: Path
    label: str


@dataclass
class Dataset:
    """The clips to evaluate. ``classes`` are the data set's labels, sorted."""

    root: Path                 # the folder, or the CSV file's folder
    kind: str                  # "folder" or "csv"
    samples: list[Sample]
    source: Path               # what the user named (folder or CSV file)

    @property
    def classes(self) -> list[str]:
        return sorted({s.label for s in self.samples}, key=lambda label: (label.casefold(), label))

    def display(self, path: Path) -> str:
        """``path`` relative to the data set's root when it lies inside, for tables."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)


def load_dataset(data: str | Path) -> Dataset:
    """Read a class-per-folder tree or a ``path,label`` CSV file (see the module doc)."""
    source = Path(data).expanduser()
    if not source.exists():
        raise ConfigError(f"data set not found: {data} (a folder with one sub-folder per class, "
                          f"or a CSV file of path,label rows)")
    if source.is_dir():
        return _load_folder(source)
    if source.suffix.lower() in VIDEO_EXTENSIONS:
        raise ConfigError(f"{data} is a video file; the data set must be a folder with one "
                          f"sub-folder of clips per class, or a CSV file of path,label rows")
    return _load_csv(source)


def _load_folder(root: Path) -> Dataset:
    samples: list[Sample] = []
    classes, loose = scan_class_folders(root)
    if loose:
        log.warning("%s: %d video file(s) directly in the data set folder ignored (clips go in "
                    "one sub-folder per class)", root, len(loose))
    for found in classes:
        if not found.clips:
            log.warning("%s: no video file (%s), not a class", found.folder,
                        " ".join(sorted(VIDEO_EXTENSIONS)))
            continue
        samples.extend(Sample(p, found.label) for p in found.clips)
    if not samples:
        raise ConfigError(f"no video clips in {root}: expected one sub-folder of clips per class "
                          f"(extensions {', '.join(sorted(VIDEO_EXTENSIONS))})")
    return Dataset(root, "folder", samples, root)


def _load_csv(path: Path) -> Dataset:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read data set file {path}: {exc}") from None
    root = path.parent
    samples: list[Sample] = []
    rows = csv.reader(text.splitlines())
    for number, row in enumerate(rows, 1):
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if number == 1 and len(cells) >= 2 and cells[0].lower() in _CSV_HEADER_PATH \
                and cells[1].lower() in _CSV_HEADER_LABEL:
            continue    # the header
        if len(cells) != 2 or not cells[0] or not cells[1]:
            raise ConfigError(f"{path}, line {number}: expected 'path,label', got {','.join(row)!r}")
        clip = Path(cells[0]).expanduser()
        samples.append(Sample(clip if clip.is_absolute() else root / clip, cells[1]))
    if not samples:
        raise ConfigError(f"no clips listed in {path} (expected rows of path,label)")
    return Dataset(root, "csv", samples, path)


# --------------------------------------------------------------------------- labels
def normalize_label(label: str) -> str:
    """The key labels are matched by: case, spaces, underscores and hyphens ignored."""
    return re.sub(r"[\s_\-]+", "", label).casefold()


def read_label_map(path: str | Path) -> dict[str, str]:
    """A YAML or JSON mapping file ``{dataset_label: model_label}``."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"labels map file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read labels map file {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)          # JSON is YAML too
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML/JSON in labels map {path}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"labels map {path}: expected a mapping {{dataset_label: model_label}}, "
                          f"got {type(data).__name__}")
    out: dict[str, str] = {}
    for key, value in data.items():
        if not isinstance(value, (str, int, float)) or isinstance(value, bool) or key is None:
            raise ConfigError(f"labels map {path}: {key!r} must map to one model label, got {value!r}")
        out[str(key)] = str(value)
    return out


def _close_matches(label: str, model_labels: Sequence[str]) -> list[str]:
    """Model labels that look like ``label`` (difflib), compared in a normalised spelling."""
    spelled = {re.sub(r"[\s_\-]+", " ", m).strip().casefold(): m for m in model_labels}
    wanted = re.sub(r"[\s_\-]+", " ", label).strip().casefold()
    return [spelled[m] for m in difflib.get_close_matches(wanted, list(spelled), n=3, cutoff=0.6)]


def match_labels(classes: Sequence[str], model_labels: Sequence[str], model_name: str,
                 mapping: Optional[dict[str, str]] = None) -> dict[str, str]:
    """``{dataset_label: model_label}`` for every class, or a ConfigError naming every miss.

    A class is looked up in ``mapping`` first (by its exact name, then ignoring case,
    spaces, underscores and hyphens), then among the model's labels the same way.
    Two classes may not end on the same model label (their clips could not be told apart).
    """
    mapping = mapping or {}
    exact = {m: m for m in model_labels}
    loose: dict[str, str] = {}
    for m in model_labels:
        loose.setdefault(normalize_label(m), m)
    map_loose = {normalize_label(k): v for k, v in mapping.items()}

    def find(label: str) -> Optional[str]:
        return exact.get(label) or loose.get(normalize_label(label))

    matched: dict[str, str] = {}
    problems: list[str] = []
    for cls in classes:
        target = mapping.get(cls, map_loose.get(normalize_label(cls)))
        wanted = cls if target is None else target
        found = find(wanted)
        if found is not None:
            matched[cls] = found
            continue
        close = _close_matches(wanted, model_labels)
        hint = f"close: {', '.join(repr(c) for c in close)}" if close else "no close match"
        where = f"{cls!r}" if target is None else f"{cls!r} (mapped to {target!r})"
        problems.append(f"{where} ({hint})")
    if problems:
        noun = "label matches" if len(problems) == 1 else f"{len(problems)} labels match"
        raise ConfigError(f"data set {noun} no label of model {model_name}: {'; '.join(problems)}. "
                          f"Rename the folder or map it with --labels-map FILE "
                          f"(YAML or JSON {{dataset_label: model_label}})")
    seen: dict[str, str] = {}
    for cls, target in matched.items():
        if target in seen:
            raise ConfigError(f"data set labels {seen[target]!r} and {cls!r} both match the model "
                              f"label {target!r}: merge them into one class or fix --labels-map")
        seen[target] = cls
    unused = set(mapping) - set(classes)
    if unused:
        log.debug("labels map entries for no data set class: %s", ", ".join(sorted(unused)))
    return matched


# --------------------------------------------------------------------------- classifier
class SharedClassifier:
    """A classifier loaded once and shared by every ``classify_file`` call.

    ``Pipeline`` calls ``load()`` and ``close()`` on its classifier each run; here
    the first ``load()`` loads and the rest are no-ops, ``close()`` waits for
    :meth:`release`. Everything else is the wrapped classifier's.
    """

    def __init__(self, inner: ClipClassifier) -> None:
        self.inner = inner
        self._loaded = False

    @property
    def name(self) -> str:
        return str(self.inner.name)

    @property
    def labels(self) -> Sequence[str]:
        return self.inner.labels

    @property
    def num_frames(self) -> int:
        return self.inner.num_frames

    @property
    def window_seconds(self) -> float:
        return self.inner.window_seconds

    @property
    def input_spec(self) -> InputSpec:
        return self.inner.input_spec

    @property
    def device(self) -> str:
        return self.inner.device

    def load(self) -> None:
        if not self._loaded:
            self.inner.load()
            self._loaded = True

    def predict(self, clips: np.ndarray) -> np.ndarray:
        return self.inner.predict(clips)

    def close(self) -> None:
        """Kept open between clips; see :meth:`release`."""

    def release(self) -> None:
        """Close the wrapped classifier, if it has a ``close()``."""
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()

    def __getattr__(self, name: str) -> Any:   # anything else a backend offers
        return getattr(self.inner, name)


# --------------------------------------------------------------------------- results
@dataclass
class ClipOutcome:
    """What the model said about one clip."""

    path: Path
    label: str                   # data set label
    model_label: str             # the model label it matches
    predicted: str               # data set label of the prediction, or the model label if none
    predicted_model_label: str
    predicted_class: Optional[str]   # data set label of the prediction; None: none of the classes
    score: float                 # probability of the predicted label
    true_score: float            # probability of the true label
    top_k: list[dict[str, Any]]  # [{label (model label), score}]
    in_top_k: bool
    windows: int
    seconds: float

    @property
    def correct(self) -> bool:
        return self.predicted_class == self.label


@dataclass
class Skipped:
    path: Path
    label: str
    reason: str


@dataclass
class EvalReport:
    """One evaluation: the clips, the skipped clips and the metrics."""

    dataset: Dataset
    model: str
    label_map: dict[str, str]
    k: int
    stride: Optional[float]
    clips: list[ClipOutcome]
    skipped: list[Skipped]
    metrics: ClassificationMetrics
    top_k_accuracy: float
    seconds: float = 0.0
    model_seconds: float = 0.0   # loading the model

    def worst(self, n: Optional[int] = None) -> list[ClipOutcome]:
        """Wrong clips first, then by the true label's probability, ascending."""
        ranked = sorted(self.clips, key=lambda c: (c.correct, c.true_score, str(c.path)))
        return ranked if n is None else ranked[:n]

    def to_json(self) -> dict[str, Any]:
        m = self.metrics
        return {
            "model": self.model,
            "dataset": str(self.dataset.source),
            "accuracy": _r(m.accuracy),
            "macro": {k: _r(v) for k, v in m.macro.items()},
            "top_k_accuracy": _r(self.top_k_accuracy),
            "k": self.k,
            "per_class": {label: {**{k: _r(v) for k, v in row.items() if k != "support"},
                                  "support": row["support"]}
                          for label, row in m.per_class().items()},
            "confusion_matrix": {"labels": list(m.labels), "columns": [*m.labels, m.other_label],
                                 "matrix": m.confusion.tolist()},
            "label_map": dict(self.label_map),
            "clips": [{"path": str(c.path), "label": c.label, "predicted": c.predicted,
                       "predicted_class": c.predicted_class,
                       "predicted_model_label": c.predicted_model_label, "score": _r(c.score),
                       "true_score": _r(c.true_score), "correct": c.correct,
                       "in_top_k": c.in_top_k, "top_k": c.top_k, "windows": c.windows,
                       "seconds": round(c.seconds, 3)} for c in self.clips],
            "skipped": [{"path": str(s.path), "label": s.label, "reason": s.reason}
                        for s in self.skipped],
            "evaluated": len(self.clips),
            "stride_seconds": self.stride,
            "seconds": round(self.seconds, 3),
        }

    def format_table(self, worst: int = 10) -> str:
        """The human-readable summary ``realtime eval`` prints."""
        m = self.metrics
        macro = m.macro
        total = len(self.clips) + len(self.skipped)
        lines = [f"model {self.model} on {self.dataset.source}: {len(self.clips)} of {total} clips "
                 f"evaluated ({len(self.skipped)} skipped), {len(m.labels)} classes, "
                 f"{self.seconds:.1f} s",
                 f"accuracy {m.accuracy:.3f}   top-{self.k} accuracy {self.top_k_accuracy:.3f}   "
                 f"macro precision {macro['precision']:.3f}  recall {macro['recall']:.3f}  "
                 f"f1 {macro['f1']:.3f}", ""]
        width = max(12, *(len(label) for label in m.labels))
        lines.append(f"{'class':<{width}}  precision  recall     f1  support")
        for i, label in enumerate(m.labels):
            lines.append(f"{label:<{width}}  {m.precision[i]:9.3f}  {m.recall[i]:6.3f}  "
                         f"{m.f1[i]:5.3f}  {int(m.support[i]):7d}")
        lines.append(f"{'macro avg':<{width}}  {macro['precision']:9.3f}  {macro['recall']:6.3f}  "
                     f"{macro['f1']:5.3f}  {int(m.support.sum()):7d}")
        shown = self.worst(worst)
        if shown:
            lines += ["", "worst-classified clips (wrong first, then by the true label's probability):"]
            for c in shown:
                mark = "ok   " if c.correct else "WRONG"
                said = c.predicted if c.predicted_class is not None else f"{c.predicted} [other]"
                lines.append(f"  {mark} {self.dataset.display(c.path)}: true {c.label} "
                             f"({c.true_score:.3f}), predicted {said} ({c.score:.3f})")
        if self.skipped:
            lines += ["", f"skipped clips ({len(self.skipped)}):"]
            lines += [f"  {self.dataset.display(s.path)}: {s.reason}" for s in self.skipped]
        return "\n".join(lines)


def _r(value: float) -> float:
    return round(float(value), 6)


# --------------------------------------------------------------------------- running
def evaluate(data: str | Path, config: Config, *, classifier: Optional[ClipClassifier] = None,
             labels_map: Optional[str | Path] = None, stride: Optional[float] = None, k: int = 5,
             progress: bool = True) -> EvalReport:
    """Classify every clip of ``data`` with the config's model (or ``classifier``) and score it.

    The classifier is built from ``config.model`` unless given, loaded once, and
    passed to every :func:`~realtime.tools.classify.classify_file` call. Raises
    ConfigError for a bad data set, labels map or unknown label (before any clip is
    classified) and SourceError when no clip at all could be classified.
    """
    from realtime.tools.classify import classify_file

    if k < 1:
        raise ConfigError(f"top-k must be >= 1, got {k}")
    if stride is not None and not stride > 0:
        raise ConfigError(f"stride must be > 0, got {stride}")
    started = time.monotonic()
    dataset = load_dataset(data)
    mapping = read_label_map(labels_map) if labels_map is not None else None
    owned = classifier is None
    if classifier is None:
        m = config.model
        classifier = create_classifier(m.name, device=m.device, dtype=m.dtype)
    shared = SharedClassifier(classifier)
    try:
        t0 = time.monotonic()
        if not list(shared.labels):      # transformers models know their labels once loaded
            shared.load()
        model_labels = list(shared.labels)
        label_map = match_labels(dataset.classes, model_labels, shared.name, mapping)
        shared.load()
        model_seconds = time.monotonic() - t0
        log.info("model %s ready in %.1f s; %d clips in %d classes", shared.name, model_seconds,
                 len(dataset.samples), len(dataset.classes))
        index = {label: i for i, label in enumerate(model_labels)}
        back = {target: cls for cls, target in label_map.items()}
        k = min(k, len(model_labels))
        clips: list[ClipOutcome] = []
        skipped: list[Skipped] = []
        true_index: list[int] = []
        probs: list[np.ndarray] = []
        with _progress_bar(len(dataset.samples), progress) as bar, _quiet_capture_logs():
            for sample in dataset.samples:
                done = f"acc {sum(c.correct for c in clips) / len(clips):.2f}, " if clips else ""
                bar.set_postfix_str(done + _short(dataset.display(sample.path)), refresh=False)
                t1 = time.monotonic()
                try:
                    if not sample.path.is_file():
                        raise SourceError("file not found")
                    result = classify_file(str(sample.path), config, classifier=shared,
                                           stride=stride, progress=False)
                    assert result.mean_probs is not None
                    p = np.asarray(result.mean_probs, dtype=np.float64)
                    if p.shape != (len(model_labels),) or not np.all(np.isfinite(p)):
                        raise SourceError(f"the model gave {p.shape} probabilities for "
                                          f"{len(model_labels)} labels")
                except (RealtimeError, OSError, ValueError, RuntimeError, cv2.error) as exc:
                    reason = str(exc) if isinstance(exc, RealtimeError) else f"{type(exc).__name__}: {exc}"
                    log.warning("skipped %s: %s", sample.path, reason)
                    skipped.append(Skipped(sample.path, sample.label, reason))
                    bar.update(1)
                    continue
                truth = label_map[sample.label]
                order = np.argsort(-p, kind="stable")
                best = model_labels[int(order[0])]
                top = [{"label": model_labels[int(j)], "score": _r(p[j])} for j in order[:k]]
                clips.append(ClipOutcome(
                    sample.path, sample.label, truth, back.get(best, best), best, back.get(best),
                    float(p[order[0]]), float(p[index[truth]]), top,
                    any(t["label"] == truth for t in top), len(result.windows),
                    time.monotonic() - t1))
                true_index.append(index[truth])
                probs.append(p)
                bar.update(1)
    finally:
        if owned:
            shared.release()
    if not clips:
        first = skipped[0]
        raise SourceError(f"none of the {len(dataset.samples)} clips in {dataset.source} could be "
                          f"classified (first: {dataset.display(first.path)}: {first.reason})")
    classes = dataset.classes
    other = OTHER_LABEL if OTHER_LABEL not in classes else f"({OTHER_LABEL})"
    # A prediction outside the data set's classes (None here) is counted in the confusion
    # matrix's "other" column and is a false negative of the true class.
    metrics = classification_metrics([c.label for c in clips], [c.predicted_class for c in clips],
                                     classes, other_label=other)
    for i, label in enumerate(classes):
        if metrics.support[i] == 0:
            log.warning("class %s: every clip was skipped; its recall counts as 0 in the macro "
                        "average", label)
    topk = top_k_accuracy(np.array(true_index), np.stack(probs), k)
    return EvalReport(dataset, shared.name, label_map, k, stride, clips, skipped, metrics, topk,
                      time.monotonic() - started, model_seconds)


def _short(text: str, width: int = 30) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3):]


@contextlib.contextmanager
def _progress_bar(total: int, enabled: bool) -> Iterator[Any]:
    """One tqdm bar over the clips on stderr (shown on a terminal), log lines kept above it."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    with tqdm(total=total, unit="clip", desc="eval", file=sys.stderr, dynamic_ncols=True,
              disable=None if enabled else True) as bar:
        if bar.disable:
            yield bar
        else:
            with logging_redirect_tqdm():
                yield bar


@contextlib.contextmanager
def _quiet_capture_logs() -> Iterator[None]:
    """The capture thread logs an unreadable file's error too; the skip warning says it once."""
    capture = logging.getLogger("realtime.stream.capture")
    if capture.getEffectiveLevel() <= logging.INFO:
        yield
        return
    level = capture.level
    capture.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        capture.setLevel(level)


# --------------------------------------------------------------------------- report files
def prepare_report_dir(path: str | Path) -> Path:
    """Create the report folder now, so that a bad path fails before the clips are classified."""
    out = Path(path).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create report folder {path}: {exc.strerror or exc}") from None
    return out


def write_report(report: EvalReport, directory: str | Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``confusion.png`` into ``directory``; return their paths."""
    out = prepare_report_dir(directory)
    json_path = out / "report.json"
    png_path = out / "confusion.png"
    m = report.metrics
    image = draw_confusion(m.confusion, m.labels, [*m.labels, m.other_label],
                           title=f"{report.model}: accuracy {m.accuracy:.3f} "
                                 f"({len(report.clips)} clips)")
    ok, encoded = cv2.imencode(".png", image)
    try:
        json_path.write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n",
                             encoding="utf-8")
        if not ok:
            raise OSError("PNG encoding failed")
        png_path.write_bytes(encoded.tobytes())
    except OSError as exc:
        raise SinkError(f"cannot write the report in {out}: {exc}") from None
    return json_path, png_path


# --------------------------------------------------------------------------- confusion.png
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_LOW = np.array([255, 255, 255], np.float64)     # BGR: white for 0 % of the row
_HIGH = np.array([107, 48, 8], np.float64)       # BGR: dark blue for 100 % of the row


def _ascii(text: str) -> str:
    """OpenCV's Hershey fonts draw ASCII only."""
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)


def _fit(text: str, scale: float, thickness: int, max_width: int) -> str:
    """``text``, shortened with '..' until it is at most ``max_width`` pixels wide."""
    text = _ascii(text)
    if cv2.getTextSize(text, _FONT, scale, thickness)[0][0] <= max_width:
        return text
    while len(text) > 1 and cv2.getTextSize(text + "..", _FONT, scale, thickness)[0][0] > max_width:
        text = text[:-1]
    return text + ".."


def _shade(fraction: float) -> tuple[int, int, int]:
    colour = _LOW + (_HIGH - _LOW) * min(1.0, max(0.0, fraction))
    return tuple(int(round(c)) for c in colour)  # type: ignore[return-value]


def draw_confusion(matrix: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str],
                   title: str = "") -> np.ndarray:
    """A BGR image of a confusion matrix: rows true, columns predicted.

    Cells are shaded by their share of the row (the class's recall on the diagonal)
    and show their count; zeros are left blank. Cell and font sizes shrink with the
    number of classes (readable up to about 50); labels are cut to fit.
    """
    matrix = np.asarray(matrix)
    rows, cols = matrix.shape
    if rows != len(row_labels) or cols != len(col_labels):
        raise ValueError(f"matrix {matrix.shape} does not fit {len(row_labels)} x {len(col_labels)} labels")
    cell = int(np.clip(1100 // max(rows, cols, 1), 18, 64))
    scale = float(np.clip(cell / 64.0, 0.3, 0.6))      # label font
    thick = 1
    widest = max(cv2.getTextSize(_ascii(t), _FONT, scale, thick)[0][0]
                 for t in [*row_labels, *col_labels, "x"])
    label_px = int(np.clip(widest + 6, 40, 260))       # room for the row and column labels
    text_h = cv2.getTextSize("Ag", _FONT, scale, thick)[0][1]
    margin = 16
    title_scale = 0.6
    title_h = cv2.getTextSize("Ag", _FONT, title_scale, 1)[0][1] + 2 * margin if title else margin
    axis_h = text_h + 14                               # the "predicted" / "true" axis titles
    left = margin + axis_h + label_px + 6
    top = title_h + axis_h + label_px + 6
    bar_w = 16
    width = left + cols * cell + margin + bar_w + 60
    height = top + max(rows * cell, 40) + margin + 8
    width = max(width, cv2.getTextSize(_ascii(title), _FONT, title_scale, 1)[0][0] + 2 * margin)
    img = np.full((height, width, 3), 255, np.uint8)

    if title:
        cv2.putText(img, _ascii(title), (margin, margin + title_h // 2), _FONT, title_scale,
                    (0, 0, 0), 1, cv2.LINE_AA)

    totals = matrix.sum(axis=1, keepdims=True).astype(np.float64)
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape, np.float64), where=totals > 0)
    count_scale = float(np.clip(cell / 70.0, 0.28, 0.6))
    for i in range(rows):
        for j in range(cols):
            x0, y0 = left + j * cell, top + i * cell
            cv2.rectangle(img, (x0, y0), (x0 + cell - 1, y0 + cell - 1), _shade(share[i, j]), -1)
            count = int(matrix[i, j])
            if count:
                text = str(count)
                s = count_scale
                while s > 0.2 and cv2.getTextSize(text, _FONT, s, 1)[0][0] > cell - 4:
                    s -= 0.05
                (tw, th), _ = cv2.getTextSize(text, _FONT, s, 1)
                ink = (255, 255, 255) if share[i, j] > 0.5 else (0, 0, 0)
                cv2.putText(img, text, (x0 + (cell - tw) // 2, y0 + (cell + th) // 2), _FONT, s,
                            ink, 1, cv2.LINE_AA)
    # grid, and a frame around the diagonal cells
    grid = (205, 205, 205)
    for i in range(rows + 1):
        cv2.line(img, (left, top + i * cell), (left + cols * cell, top + i * cell), grid, 1)
    for j in range(cols + 1):
        cv2.line(img, (left + j * cell, top), (left + j * cell, top + rows * cell), grid, 1)
    for i in range(min(rows, cols)):
        x0, y0 = left + i * cell, top + i * cell
        cv2.rectangle(img, (x0, y0), (x0 + cell, y0 + cell), (40, 40, 40), 1)
    if cols > rows:  # the "other" column(s): a separating line
        x = left + rows * cell
        cv2.line(img, (x, top), (x, top + rows * cell), (80, 80, 80), 2)

    # row labels (true), right-aligned next to the rows
    for i, label in enumerate(row_labels):
        text = _fit(label, scale, thick, label_px)
        (tw, th), _ = cv2.getTextSize(text, _FONT, scale, thick)
        cv2.putText(img, text, (left - 6 - tw, top + i * cell + (cell + th) // 2), _FONT, scale,
                    (0, 0, 0), thick, cv2.LINE_AA)
    # column labels (predicted), written upwards above the columns
    strip = np.full((cell * cols, label_px, 3), 255, np.uint8)   # drawn sideways, then rotated
    for j, label in enumerate(col_labels):
        text = _fit(label, scale, thick, label_px - 4)
        (tw, th), _ = cv2.getTextSize(text, _FONT, scale, thick)
        y = j * cell + (cell + th) // 2                # rotated: y becomes x, x runs upwards
        cv2.putText(strip, text, (2, y), _FONT, scale, (0, 0, 0), thick, cv2.LINE_AA)
    img[top - 6 - label_px:top - 6, left:left + cols * cell] = cv2.rotate(
        strip, cv2.ROTATE_90_COUNTERCLOCKWISE)
    # axis titles
    axis_scale = float(np.clip(scale + 0.1, 0.4, 0.6))
    (tw, th), _ = cv2.getTextSize("predicted", _FONT, axis_scale, 1)
    cv2.putText(img, "predicted", (left + max(0, (cols * cell - tw) // 2), title_h + th), _FONT,
                axis_scale, (0, 0, 0), 1, cv2.LINE_AA)
    (tw2, _), _ = cv2.getTextSize("true", _FONT, axis_scale, 1)
    side = np.full((th + 8, tw2 + 4, 3), 255, np.uint8)
    cv2.putText(side, "true", (2, th + 2), _FONT, axis_scale, (0, 0, 0), 1, cv2.LINE_AA)
    side = cv2.rotate(side, cv2.ROTATE_90_COUNTERCLOCKWISE)
    y0 = top + max(0, (rows * cell - side.shape[0]) // 2)
    y1 = min(height, y0 + side.shape[0])
    img[y0:y1, margin:margin + side.shape[1]] = side[:y1 - y0]
    # colour bar: share of the row
    bx = left + cols * cell + margin
    bh = max(rows * cell, 40)
    for y in range(bh):
        img[top + y, bx:bx + bar_w] = _shade(1.0 - y / max(1, bh - 1))
    cv2.rectangle(img, (bx, top), (bx + bar_w, top + bh - 1), (120, 120, 120), 1)
    small = 0.35
    cv2.putText(img, "100%", (bx + bar_w + 4, top + 10), _FONT, small, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "0%", (bx + bar_w + 4, top + bh - 2), _FONT, small, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "of row", (bx + bar_w + 4, top + bh // 2), _FONT, small, (0, 0, 0), 1,
                cv2.LINE_AA)
    return img
