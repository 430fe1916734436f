"""The data set of ``realtime eval``: its clips and labels, and how they match the model's labels.

A data set is either a folder with one sub-folder of clips per class (the
sub-folder's name is the class) or a CSV file of ``path,label`` rows. Its labels
are matched to the model's labels ignoring case, spaces, underscores and hyphens
(``arm_wrestling`` is ``arm wrestling``), or through a mapping file; every label
is checked here, before the first clip is classified. Nothing in this module
loads a model or decodes video.
"""

from __future__ import annotations

import csv
import difflib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import yaml

from realtime.core.errors import ConfigError
from realtime.tools.clipfolders import VIDEO_EXTENSIONS, scan_class_folders

log = logging.getLogger(__name__)

_CSV_HEADER_PATH = {"path", "file", "filename", "file_name", "video", "clip"}
_CSV_HEADER_LABEL = {"label", "class", "category", "activity"}


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
