"""The package's layers (pyproject.toml, [tool.importlinter]): no module imports a layer above it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is missing: pip install -e '.[test]'"
    return subprocess.run([exe, "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_import_contracts_hold():
    r = lint_imports(REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 kept, 0 broken" in r.stdout


def test_a_core_module_importing_the_pipeline_breaks_the_contract(tmp_path):
    """The check is real: the same contracts on a copy where core reaches up into stream fail."""
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "realtime", copy / "realtime", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    bad = copy / "realtime" / "core" / "metrics.py"
    bad.write_text(bad.read_text() + "\nfrom realtime.stream.pipeline import Pipeline  # noqa\n")
    r = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, '.'); "
                        "from importlinter.cli import lint_imports_command; lint_imports_command()",
                        "--no-cache"], cwd=copy, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "realtime.core.metrics -> realtime.stream.pipeline" in r.stdout, r.stdout
