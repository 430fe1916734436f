"""The result of ``realtime eval``: per-clip outcomes, the metrics table and the report files.

:class:`EvalReport` holds what :func:`realtime.tools.evaluate.run.evaluate` found and
formats it (a text table, or JSON); :func:`write_report` writes ``report.json`` and
``confusion.png`` (drawn by :mod:`realtime.tools.evaluate.confusion`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import cv2

from realtime.core.errors import ConfigError, SinkError
from realtime.core.metrics import ClassificationMetrics
from realtime.tools.evaluate.confusion import draw_confusion
from realtime.tools.evaluate.dataset import Dataset


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
            "accuracy": round_score(m.accuracy),
            "macro": {k: round_score(v) for k, v in m.macro.items()},
            "top_k_accuracy": round_score(self.top_k_accuracy),
            "k": self.k,
            "per_class": {label: {**{k: round_score(v) for k, v in row.items() if k != "support"},
                                  "support": row["support"]}
                          for label, row in m.per_class().items()},
            "confusion_matrix": {"labels": list(m.labels), "columns": [*m.labels, m.other_label],
                                 "matrix": m.confusion.tolist()},
            "label_map": dict(self.label_map),
            "clips": [{"path": str(c.path), "label": c.label, "predicted": c.predicted,
                       "predicted_class": c.predicted_class,
                       "predicted_model_label": c.predicted_model_label, "score": round_score(c.score),
                       "true_score": round_score(c.true_score), "correct": c.correct,
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


def round_score(value: float) -> float:
    """A score or rate as written to the report (6 decimals)."""
    return round(float(value), 6)


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
