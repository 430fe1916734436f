"""Credentials in stream URLs: split them out, hide them in everything shown, pass them safely.

A camera password may hold any character, ``/ # ? @`` and spaces included, and users paste it
into the URL as it is (``rtsp://alice:S3cr/3t@cam/live``). A standard URL parser then takes the
password for a path and the user name for the host, so everything between the scheme and the
*last* ``@`` is treated here as user info, whatever it holds. Every URL a source is opened with is
also remembered, so its secrets are hidden wherever they turn up in a message, as a URL or not
(an exception's text, a log line from a library). Nothing here logs.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Optional
from urllib.parse import quote, unquote

MASK = "***"
_SCHEME = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*)://")
SECRET_QUERY_KEYS = re.compile(r"pass|pwd|pw|token|secret|key|auth|sig|cred|session", re.IGNORECASE)
_QUERY_PAIR = re.compile(r"([?&;])([^=&;#]*)=([^&;#]*)")
_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_USERINFO_SAFE = "!$&'()*+,;="        # RFC 3986 sub-delims: kept as they are in user and password

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def split_url(url: str) -> Optional[tuple[str, Optional[str], str]]:
    """``(scheme, userinfo or None, rest)`` of ``scheme://userinfo@rest``; None if not a URL.
    The user info runs to the last ``@``, so a password with ``/``, ``#``, ``?`` or ``@`` in it
    stays in it."""
    match = _SCHEME.match(url)
    if not match:
        return None
    after = url[match.end():]
    if "@" in after:
        userinfo, rest = after.rsplit("@", 1)
        return match.group(1), userinfo, rest
    return match.group(1), None, after


def credentials(url: str) -> tuple[Optional[str], Optional[str]]:
    """The user name and password in ``url`` (percent-decoded), or ``(None, None)``."""
    parts = split_url(url)
    if parts is None or parts[1] is None:
        return None, None
    user, _, password = parts[1].partition(":")
    return unquote(user), unquote(password)


def without_userinfo(url: str) -> str:
    """``url`` without its user info (the address a probe or a display may use)."""
    parts = split_url(url)
    return url if parts is None else f"{parts[0]}://{parts[2]}"


def host_of(url: str) -> str:
    """The host ``url`` names (without brackets or port), or "" when it names none."""
    parts = split_url(url)
    if parts is None:
        return ""
    authority = re.split(r"[/?#]", parts[2], maxsplit=1)[0]
    if authority.startswith("["):
        end = authority.find("]")
        return authority[1:end] if end > 0 else ""
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


def _redact_query(rest: str) -> str:
    return _QUERY_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}={MASK}"
                           if SECRET_QUERY_KEYS.search(m.group(2)) else m.group(0), rest)


def redact_url(url: str) -> str:
    """``url`` with its user info and secret-looking query values (``password=``, ``token=``,
    ``pw=``, ...) replaced by ``***``. Text that is not a URL comes back unchanged."""
    parts = split_url(url)
    if parts is None:
        return url
    scheme, userinfo, rest = parts
    return f"{scheme}://{MASK + '@' if userinfo is not None else ''}{_redact_query(rest)}"


def remember(url: str) -> None:
    """Hide the secrets of ``url`` (its user info, password and secret query values, as written
    and percent-decoded) in every later :func:`redact_text`."""
    parts = split_url(url)
    if parts is None:
        return
    found = set()
    if parts[1]:
        user, _, password = parts[1].partition(":")
        found |= {parts[1], unquote(parts[1])} | _password_forms(password)
    for match in _QUERY_PAIR.finditer(parts[2]):
        if SECRET_QUERY_KEYS.search(match.group(2)):
            found |= {match.group(3), unquote(match.group(3))}
    _hide(found)


def remember_secret(password: str) -> None:
    """Hide a password given on its own (not in a URL), as written and percent-encoded, in every
    later :func:`redact_text`."""
    _hide(_password_forms(password))


def _password_forms(password: str) -> set[str]:
    return {password, unquote(password), quote(unquote(password), safe=_USERINFO_SAFE)}


def _hide(found: set[str]) -> None:
    found = {s for s in found if len(s) >= 3}       # a 1-2 character secret would mask ordinary text
    with _secrets_lock:
        _secrets.update(found)


def redact_text(text: str) -> str:
    """``text`` with every URL redacted and every remembered secret replaced by ``***``."""
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def expand_env(url: str, what: str = "the source URL") -> str:
    """Replace each ``${NAME}`` in ``url`` by the environment variable NAME, so a password need
    not be written on the command line (where ``ps`` shows it to every user)."""
    def value(match: re.Match) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise KeyError(f"environment variable {name} named in {what} is not set")
        return os.environ[name]
    return _ENV_REFERENCE.sub(value, url)


def for_opener(url: str) -> str:
    """``url`` with its user name and password percent-encoded, so FFmpeg (which decodes them)
    finds the host after the last ``@`` even when the password holds ``/``, ``#``, ``?`` or ``@``.
    Already-encoded parts stay as they are."""
    parts = split_url(url)
    if parts is None or parts[1] is None:
        return url
    user, colon, password = parts[1].partition(":")
    encode = lambda s: quote(unquote(s), safe=_USERINFO_SAFE)   # noqa: E731
    return f"{parts[0]}://{encode(user)}{colon}{encode(password)}@{parts[2]}"


class RedactingFilter(logging.Filter):
    """Redacts every record a handler emits: library messages and exception text included."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message)
        if record.exc_info and record.exc_info[1] is not None:
            # The traceback names values too (a URL in an exception's text): redact it as well.
            clean += "\n" + redact_text(logging.Formatter().formatException(record.exc_info))
            record.exc_info, record.exc_text = None, None
        if clean != message:
            record.msg, record.args = clean, None
        return True
