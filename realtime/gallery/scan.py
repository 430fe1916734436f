"""Which files of a gallery folder are videos: nested folders, any case of the usual extensions,
hidden names skipped, symbolic links followed once (a link back up the tree is not a loop)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from realtime.core.errors import ConfigError
from realtime.tools.clipfolders import VIDEO_EXTENSIONS


def _hidden(name: str) -> bool:
    return name.startswith((".", "__"))       # .git, .DS_Store, __MACOSX


def gallery_videos(root: str | os.PathLike[str]) -> Iterator[Path]:
    """Absolute paths of the videos under ``root``, sorted within each folder; each real file once."""
    top = Path(root).expanduser()
    if not top.is_dir():
        raise ConfigError(f"gallery {root}: not a folder")
    top = top.absolute()
    seen_dirs: set[str] = set()
    seen_files: set[str] = set()
    stack = [top]
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder)
        if real in seen_dirs:
            continue
        seen_dirs.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue                               # unreadable folder: nothing to index there
        subdirs = []
        for entry in entries:
            if _hidden(entry.name):
                continue
            try:
                if entry.is_dir(follow_symlinks=True):
                    subdirs.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=True) and Path(entry.name).suffix.lower() in VIDEO_EXTENSIONS:
                    target = os.path.realpath(entry.path)
                    if target not in seen_files:
                        seen_files.add(target)
                        yield Path(entry.path)
            except OSError:
                continue                           # a dangling link
        stack.extend(reversed(subdirs))
