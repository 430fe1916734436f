"""The YAML presets (``fitness``, ``rtsp``, ...): the one place that knows where they are.

In the repository they live in the top-level ``configs/`` folder. A built wheel carries the same
files as ``realtime/_presets/*.yaml`` (setup.py maps the subpackage ``realtime._presets`` onto
``configs/``), so:

- installed from a wheel or sdist: ``<site-packages>/realtime/_presets/``;
- a source checkout or an editable install (the package is imported from ``<repo>/realtime``):
  ``<repo>/configs/``.

The packaged folder is tried first, so an installed copy never reads some unrelated ``configs/``
folder that happens to sit beside it in site-packages. The package is always installed unzipped
(torch and OpenCV cannot be imported from a zip), so plain paths are returned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

SUFFIX = ".yaml"

_PACKAGE_DIR = Path(__file__).resolve().parents[1]      # realtime/
_CANDIDATES = (
    _PACKAGE_DIR / "_presets",           # installed from a wheel
    _PACKAGE_DIR.parent / "configs",     # source checkout / editable install
)


def preset_dir() -> Optional[Path]:
    """The folder that holds the presets, or None when there is none (a broken install)."""
    for d in _CANDIDATES:
        if d.is_dir():
            return d
    return None


def preset_names() -> list[str]:
    """The names of the presets, sorted: what ``--config NAME`` accepts."""
    d = preset_dir()
    if d is None:
        return []
    return sorted(p.stem for p in d.glob(f"*{SUFFIX}") if p.is_file())


def find_preset(name: str) -> Optional[Path]:
    """The file of preset ``name`` (``"fitness"``), or None when there is no such preset.

    Only bare names are presets: anything with a path separator, a suffix or a leading dot
    (``configs/fitness``, ``fitness.yaml``, ``..``) is not, and gives None.
    """
    if not name or name.startswith(".") or Path(name).name != name or Path(name).suffix:
        return None
    if "/" in name or "\\" in name:
        return None
    d = preset_dir()
    if d is None:
        return None
    p = d / f"{name}{SUFFIX}"
    return p if p.is_file() else None
