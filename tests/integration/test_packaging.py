"""Packaging: a built wheel carries the YAML presets and ``py.typed``, and an installed copy finds them.

The presets live in the repository's top-level ``configs/``; the build maps that folder onto
``realtime/_presets`` in the wheel (see pyproject.toml and setup.py), and ``realtime.config.presets`` is
the one place that looks them up. These tests build the package the way ``python -m build`` does
(an sdist, then a wheel from the unpacked sdist, without build isolation so no download is needed),
install the wheel into a temporary folder and run it from there with the source tree out of reach.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
REPO_PRESETS = sorted(p.stem for p in CONFIGS.glob("*.yaml"))

# Generated or heavy folders that a build never needs.
_NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", "venv", "build", "dist", "out", "*.egg-info", "__pycache__", ".pytest_cache",
    "*.pyc", "*.mp4", "*.avi",
)


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} failed ({proc.returncode})\n--- stdout\n{proc.stdout[-4000:]}\n"
        f"--- stderr\n{proc.stderr[-4000:]}")
    return proc.stdout


def _clean_sys_path() -> list[str]:
    """This interpreter's import path, less every entry from which the source tree is importable."""
    keep = []
    for entry in sys.path:
        p = Path(entry or ".").resolve()
        if not p.is_dir() or (p / "realtime").exists() or (p / "realtime.py").exists():
            continue
        keep.append(str(p))
    return keep


# --------------------------------------------------------------------------- in the source tree
def test_source_tree_presets_are_the_configs_folder():
    from realtime.config import presets

    assert REPO_PRESETS, "configs/ holds no *.yaml presets"
    assert presets.preset_names() == REPO_PRESETS
    found = presets.find_preset("fitness")
    assert found is not None and found.read_bytes() == (CONFIGS / "fitness.yaml").read_bytes()


@pytest.mark.parametrize("name", ["nosuch", "", "fitness.yaml", "../configs/fitness", "configs/fitness",
                                  ".", "..", "/etc/passwd"])
def test_find_preset_takes_bare_names_only(name):
    from realtime.config import presets

    assert presets.find_preset(name) is None


def test_py_typed_marker_in_source():
    assert (REPO / "realtime" / "py.typed").is_file()


# --------------------------------------------------------------------------- built and installed
def _build_wheel(tmp_path: Path) -> Path:
    """sdist from a copy of the tree, then a wheel from the unpacked sdist (as ``python -m build``)."""
    pytest.importorskip("setuptools", reason="building needs setuptools in this environment")
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=_NOT_COPIED, symlinks=True)
    sdist_dir = tmp_path / "sdist"
    sdist_dir.mkdir()
    name = _run([sys.executable, "-c",
                 "import sys; from setuptools import build_meta as b; print(b.build_sdist(sys.argv[1]))",
                 str(sdist_dir)], cwd=src).strip().splitlines()[-1]
    sdist = sdist_dir / name
    with tarfile.open(sdist) as tf:
        members = tf.getnames()
        root = members[0].split("/")[0]
        for stem in REPO_PRESETS:
            assert f"{root}/configs/{stem}.yaml" in members, f"sdist lacks configs/{stem}.yaml"
        tf.extractall(tmp_path / "unpacked", filter="data")
    wheel_dir = tmp_path / "wheel"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "-q", "-w", str(wheel_dir), str(tmp_path / "unpacked" / root)], cwd=tmp_path)
    (wheel,) = wheel_dir.glob("realtime-*.whl")
    return wheel


@pytest.mark.timeout(300)
def test_wheel_ships_presets_and_installed_copy_finds_them(tmp_path):
    wheel = _build_wheel(tmp_path)

    names = set(zipfile.ZipFile(wheel).namelist())
    assert "realtime/py.typed" in names
    missing = [s for s in REPO_PRESETS if f"realtime/_presets/{s}.yaml" not in names]
    assert not missing, f"the wheel lacks presets {missing}: {sorted(n for n in names if 'yaml' in n)}"

    site = tmp_path / "site"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site),
          str(wheel)], cwd=tmp_path)

    # -S: no .pth files, so no editable-install finder; the dependencies come from this
    # interpreter's path with the source tree left out; the cwd is outside the repository.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), *_clean_sys_path()]))
    env.pop("PYTHONSAFEPATH", None)
    work = tmp_path / "elsewhere"
    work.mkdir()
    check = (
        "import sys, realtime, realtime.config.presets as p\n"
        "from pathlib import Path\n"
        "site = Path(sys.argv[1]).resolve()\n"
        "assert Path(realtime.__file__).resolve().is_relative_to(site), realtime.__file__\n"
        "assert (Path(realtime.__file__).parent / 'py.typed').is_file()\n"
        "f = p.find_preset('fitness')\n"
        "assert f is not None and f.resolve().is_relative_to(site), f\n"
        "print(','.join(p.preset_names()))\n"
    )
    out = _run([sys.executable, "-S", "-c", check, str(site)], cwd=work, env=env)
    assert out.strip().split(",") == REPO_PRESETS

    out = _run([sys.executable, "-S", "-m", "realtime", "run", "--config", "fitness", "--print-config"],
               cwd=work, env=env)
    assert "name: i3d-kinetics400" in out and "uncertain_label: resting" in out, out
