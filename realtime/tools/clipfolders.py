"""Clips sorted into class folders: which files are videos, which folders are classes.

``realtime eval`` and ``realtime finetune`` both read data sets laid out as one sub-folder of
clips per class; they share these rules so that a clip one of them sees, the other sees too.
Pure file-system logic: no decoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg",
                              ".wmv", ".flv", ".3gp", ".ts", ".mts"})


def is_video_file(path: Path) -> bool:
    """A regular file (or a link to one) whose extension is a known video extension."""
    return path.suffix.lower() in VIDEO_EXTENSIONS and path.is_file()


def is_hidden(path: Path, root: Path) -> bool:
    """Under a hidden name below ``root``: ``.git``, ``.DS_Store``, an archive's ``__MACOSX``."""
    return any(part.startswith((".", "__")) for part in path.relative_to(root).parts)


@dataclass(frozen=True)
class ClassFolder:
    folder: Path
    clips: tuple[Path, ...]      # video files inside, sub-folders included, sorted

    @property
    def label(self) -> str:
        return self.folder.name


def scan_class_folders(root: Path) -> tuple[list[ClassFolder], list[Path]]:
    """The class folders of ``root`` sorted by name (empty ones included), and the video files
    lying directly in ``root`` (which belong to no class)."""
    folders = sorted((p for p in root.iterdir() if p.is_dir() and not is_hidden(p, root)),
                     key=lambda p: p.name)
    classes = [ClassFolder(folder, tuple(sorted(p for p in folder.rglob("*")
                                                if is_video_file(p) and not is_hidden(p, root))))
               for folder in folders]
    loose = sorted(p for p in root.iterdir() if is_video_file(p))
    return classes, loose
