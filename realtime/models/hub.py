"""The Hugging Face hub as the model backends meet it: is it reachable, is a model cached, and
whether a ``--model`` name is a local directory or a hub id; errors that say what to do.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator, Optional

from realtime.core.errors import ConfigError, ModelError

logger = logging.getLogger(__name__)

OFFLINE_MODEL = "i3d-kinetics400"
"""The model that works without the hub; suggested when a hub model cannot be fetched."""

HUB_PROBE_TIMEOUT_S = 3.0
"""Seconds the one reachability check of the hub may take before a hub model is fetched."""


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) offline mode is on."""
    try:
        from huggingface_hub import constants

        if constants.is_offline_mode():
            return True
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        pass
    return any(os.environ.get(k, "").strip().upper() in {"1", "ON", "YES", "TRUE"}
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_connection_error(exc: BaseException) -> bool:
    """True if ``exc`` (or what caused it) means the hub could not be reached / offline mode."""
    try:
        from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled
        hub_types: tuple[type[BaseException], ...] = (LocalEntryNotFoundError, OfflineModeIsEnabled)
    except ImportError:  # pragma: no cover
        hub_types = ()
    net_types: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
    for module in ("httpx2", "httpx"):   # huggingface_hub >= 2 uses httpx2, 1.x httpx
        try:
            net_types += (__import__(module).TransportError,)
        except (ImportError, AttributeError):
            pass
    for e in _exception_chain(exc):
        if isinstance(e, hub_types + net_types):
            return True
        if "couldn't connect" in str(e) or "offline mode" in str(e).lower():
            return True
    return False


def is_repo_not_found(exc: BaseException) -> bool:
    try:
        from huggingface_hub.errors import RepositoryNotFoundError
    except ImportError:  # pragma: no cover
        return False
    return any(isinstance(e, RepositoryNotFoundError) for e in _exception_chain(exc))


def hub_endpoint() -> str:
    """The hub that model files are fetched from (``HF_ENDPOINT``, default https://huggingface.co)."""
    from urllib.parse import urlsplit

    from huggingface_hub import hf_hub_url

    parts = urlsplit(hf_hub_url("owner/name", "config.json"))   # the host downloads really go to
    return f"{parts.scheme}://{parts.netloc}"


def hub_unreachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> Optional[str]:
    """Why the hub cannot be reached, or None when it answers.

    One HEAD of the endpoint, no retries, through huggingface_hub's own HTTP client (so the
    same proxies, certificates and ``HF_ENDPOINT``). Any HTTP answer counts as reachable.
    Needed because ``hf_hub_download``, when a file is neither reachable nor cached, retries
    the request 5 more times with 1-8 s back-off (about 25 s) before giving up."""
    from huggingface_hub.utils import get_session

    url = hub_endpoint()
    try:
        get_session().head(url, timeout=timeout, follow_redirects=False)
    except Exception as exc:  # httpx2.TransportError and friends: DNS, refused, timeout, TLS, proxy
        logger.debug("hub probe of %s failed: %r", url, exc)
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return None


def in_hub_cache(repo_id: str) -> bool:
    """Whether the hub cache holds the config of ``repo_id`` (so loading it offline may work)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # a malformed cache entry: let transformers report it
        return False


def offline_message(model_id: str, reason: Optional[str] = None) -> str:
    if hub_offline():
        why = "offline mode is on (HF_HUB_OFFLINE=1), so the Hugging Face Hub could not be reached"
    elif reason:
        why = f"the Hugging Face Hub at {hub_endpoint()} could not be reached ({reason})"
    else:
        why = "the Hugging Face Hub could not be reached"
    return (
        f"cannot load Hugging Face model '{model_id}': {why} and the model is not in the local cache. "
        f"Use the offline model '{OFFLINE_MODEL}', or pass a local directory holding a saved model "
        "(config.json, weights, preprocessor_config.json)."
    )


# --------------------------------------------------------------------------- model names


def _looks_like_path(text: str) -> bool:
    """Whether ``text`` (which does not exist) was meant as a local path, not a hub id."""
    if (os.path.isabs(text) or text.startswith((".", "~")) or text.endswith(("/", os.sep))
            or text.count("/") > 1 or (os.sep != "/" and os.sep in text)):
        return True
    # "models/my-videomae" where ./models exists: a missing directory, not the hub id models/my-videomae
    return "/" in text and Path(text).expanduser().parent.is_dir()


def model_source(model_id: str) -> tuple[str, bool]:
    """(path or hub id, is_local) for a transformers model name, checked without the network.

    Raises ModelError for a local path that is missing, a file, or lacks config.json, and
    ConfigError for a name that is no valid hub id (``name`` or ``owner/name``)."""
    path = Path(model_id).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(
                f"model directory '{path}' has no config.json; it must hold a transformers "
                "save_pretrained() checkpoint (config.json, weights, preprocessor_config.json)"
            )
        return str(path), True
    if path.exists():
        raise ModelError(f"model path '{path}' is a file; expected a model directory or a hub id")
    if _looks_like_path(model_id):
        raise ModelError(f"model directory not found: {os.path.expanduser(model_id)} (the path does not exist)")
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(model_id)
    except HFValidationError as exc:
        raise ConfigError(
            f"invalid model name '{model_id}': not '{OFFLINE_MODEL}', not an existing directory and not a "
            f"Hugging Face hub id (owner/name, letters, digits, '-', '_', '.'): {exc}"
        ) from None
    return model_id, False
