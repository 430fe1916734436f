"""The files of event clips: their names, where they go by default, and the disk bound.

Only files named like :data:`CLIP_NAME` (``<stream>_<yyyymmddThhmmss>Z_<label>.mp4``) are ever
counted or deleted, so a clips folder may hold other files safely.
"""

from __future__ import annotations

import logging
import os
import re
import unicodedata
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

log = logging.getLogger(__name__)

CLIP_NAME = re.compile(r"[A-Za-z0-9_-]+_\d{8}T\d{6}Z_[A-Za-z0-9-]+\.mp4")
"""The names of the files this feature writes; only these are ever deleted to keep the bounds."""
PART_SUFFIX = ".part.mp4"   # a clip being written is ``.<name without .mp4>.part.mp4``, then renamed
PART_NAME = re.compile(r"\.[A-Za-z0-9_-]+_\d{8}T\d{6}Z_[A-Za-z0-9-]+\.part\.mp4")
STALE_PART_SECONDS = 600.0  # a partial clip this old was left by a run that died: deleted at start
_PART_LENGTH = 64        # characters of the stream and of the label in a file name, at most


def default_clips_dir() -> Path:
    """``$XDG_DATA_HOME/realtime/clips`` (``~/.local/share/realtime/clips``), beside the gallery."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "realtime" / "clips"


def _slug(text: str, extra: str, fallback: str) -> str:
    """``text`` in ASCII letters, digits and ``extra`` (accents dropped, the rest ``-``)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(rf"[^A-Za-z0-9{re.escape(extra)}]+", "-", ascii_text).strip("-_")
    return slug[:_PART_LENGTH].strip("-_") or fallback


def clip_name(stream: str, wall: float, label: str) -> str:
    """``<stream>_<yyyymmddThhmmss>Z_<label>.mp4``: the stream (ASCII letters, digits, ``_``,
    ``-``), the change's UTC time (``wall``, unix epoch) and its label (``playing guitar`` ->
    ``playing-guitar``), safe in a file name and a URL on every system."""
    when = datetime.fromtimestamp(wall, timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{_slug(stream, '_-', 'stream')}_{when}_{_slug(label, '-', 'label')}.mp4"


def prune(directory: Path, max_clips: int, max_bytes: float,
          keep: Iterable[Path] = ()) -> list[Path]:
    """Delete the oldest clips in ``directory`` beyond ``max_clips`` files or ``max_bytes`` in all.

    Only files named like :data:`CLIP_NAME` count, newest (by modification time) first; once
    one is beyond a bound, it and every older one go. ``keep`` (clips still being written) are
    neither counted nor deleted. Returns the files deleted."""
    skip = {Path(p) for p in keep}
    clips: list[tuple[int, str, int, Path]] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if not CLIP_NAME.fullmatch(entry.name) or Path(entry.path) in skip:
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            clips.append((st.st_mtime_ns, entry.name, st.st_size, Path(entry.path)))
    clips.sort(reverse=True)
    kept = total = 0
    over = False
    removed: list[Path] = []
    for _, _, size, path in clips:
        if not over and kept < max_clips and total + size <= max_bytes:
            kept += 1
            total += size
            continue
        over = True
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("clips: cannot delete %s: %s", path, exc.strerror)
    return removed
