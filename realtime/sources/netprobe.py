"""Why a network stream did not open: one quick request to the server, after OpenCV failed.

OpenCV's FFmpeg backend reports only "not opened". The user needs the cause (connection
refused, host not found, timed out, no such stream, wrong password), so after a failure we
ask the server ourselves: a TCP connect, then an RTSP ``DESCRIBE`` or an HTTP ``GET`` whose
status line names the problem. Credentials in the URL are used for the request (Basic or
Digest, as the server asks) and never appear in what this module returns.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import re
import socket
import ssl
import urllib.error
import urllib.request
from typing import Optional
from urllib.parse import urlsplit

from realtime.core.redact import credentials, without_userinfo

DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443, "rtmp": 1935, "tcp": None}

_STATUS_MEANING = {
    400: "the server rejected the request (400 Bad Request)",
    401: "unauthorised (401): the stream needs a user name and password",
    403: "forbidden (403): this user may not open the stream",
    404: "not found (404): the server has no stream at this path",
    454: "not found (454 Session Not Found)",
    503: "the server is unavailable (503)",
}


def _socket_cause(exc: BaseException, host: str, port: int) -> str:
    where = f"{host}:{port}"
    if isinstance(exc, socket.gaierror):
        return f"host not found: {host}"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"timed out connecting to {where}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {where} (nothing listens there)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed with {where}: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return f"no route to {where}"
    if isinstance(exc, OSError) and exc.errno == errno.ECONNRESET:
        return f"connection reset by {where}"
    return f"cannot connect to {where}: {getattr(exc, 'strerror', None) or exc}"


def _digest(user: str, password: str, method: str, uri: str, challenge: str) -> str:
    fields = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
    realm, nonce = fields.get("realm", ""), fields.get("nonce", "")
    ha1 = hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
    response = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
    return (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'response="{response}"')


def _rtsp_request(sock: socket.socket, uri: str, cseq: int, auth: Optional[str]) -> tuple[int, str]:
    lines = [f"DESCRIBE {uri} RTSP/1.0", f"CSeq: {cseq}", "Accept: application/sdp",
             "User-Agent: realtime-probe"]
    if auth:
        lines.append(f"Authorization: {auth}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    match = re.match(r"RTSP/\d\.\d (\d{3})", head)
    if not match:
        raise ConnectionError("no RTSP answer")
    return int(match.group(1)), head


def _probe_rtsp(url: str, timeout: float) -> str:
    plain = without_userinfo(url).split("#", 1)[0]
    parts = urlsplit(plain)
    host = parts.hostname or ""
    port = parts.port or DEFAULT_PORTS[parts.scheme.lower()]
    user, password = credentials(url)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        return _socket_cause(exc, host, port)
    try:
        if parts.scheme.lower() == "rtsps":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        code, head = _rtsp_request(sock, plain, 1, None)
        if code == 401 and user is not None:
            challenge = re.search(r"^WWW-Authenticate:\s*(.+)$", head, re.I | re.M)
            scheme = challenge.group(1).strip() if challenge else "Basic"
            if scheme.lower().startswith("digest"):
                auth = _digest(user, password or "", "DESCRIBE", plain, scheme)
            else:
                auth = "Basic " + base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            code, head = _rtsp_request(sock, plain, 2, auth)
            if code == 401:
                return "unauthorised (401): the server rejected the user name or password"
    except OSError as exc:
        return _socket_cause(exc, host, port)
    except ConnectionError:
        return f"{host}:{port} accepted the connection but did not answer as an RTSP server"
    finally:
        sock.close()
    if code == 200:
        return "the server offers the stream, but it could not be opened (an unsupported codec?)"
    return _STATUS_MEANING.get(code, f"the server answered RTSP status {code}")


def _probe_http(url: str, timeout: float) -> str:
    plain = without_userinfo(url).split("#", 1)[0]
    parts = urlsplit(plain)
    host = parts.hostname or ""
    port = parts.port or DEFAULT_PORTS[parts.scheme.lower()]
    user, password = credentials(url)
    request = urllib.request.Request(plain, headers={"User-Agent": "realtime-probe"})
    if user is not None:
        token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            kind = answer.headers.get("Content-Type", "?")
    except urllib.error.HTTPError as exc:
        if exc.code == 401 and user is not None:
            return "unauthorised (401): the server rejected the user name or password"
        return _STATUS_MEANING.get(exc.code, f"the server answered HTTP status {exc.code}")
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, BaseException):
            return _socket_cause(reason, host, port)
        return f"cannot reach {host}:{port}: {reason}"
    except OSError as exc:
        return _socket_cause(exc, host, port)
    return f"the server answers (content type {kind}), but it is not a video stream OpenCV can read"


def diagnose(url: str, timeout: float = 3.0) -> Optional[str]:
    """The likely reason ``url`` could not be opened, or None when this module cannot tell.

    Never raises and never returns the URL's credentials."""
    try:
        parts = urlsplit(without_userinfo(url))
        scheme = parts.scheme.lower()
        if not parts.hostname:
            return "the URL names no host"
        if scheme in ("rtsp", "rtsps"):
            return _probe_rtsp(url, timeout)
        if scheme in ("http", "https"):
            return _probe_http(url, timeout)
        port = parts.port or DEFAULT_PORTS.get(scheme)
        if port is None:
            return None
        try:
            socket.create_connection((parts.hostname, port), timeout=timeout).close()
        except OSError as exc:
            return _socket_cause(exc, parts.hostname, port)
        return None
    except ValueError:
        return "the URL cannot be parsed"
