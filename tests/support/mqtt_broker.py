"""A real MQTT broker (Debian's mosquitto) on 127.0.0.1, and mosquitto_sub subscribers in their own processes."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional

from support.rtsp import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_SUB = shutil.which("mosquitto_sub")


def available() -> bool:
    return Path(MOSQUITTO).is_file() and MOSQUITTO_SUB is not None


class Broker:
    """``mosquitto`` listening on 127.0.0.1:``port``; stop and start again on the same port."""

    def __init__(self, workdir: Path, port: Optional[int] = None) -> None:
        self.port = port or free_port()
        self.conf = workdir / f"mosquitto-{self.port}.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.log = workdir / f"mosquitto-{self.port}.log"
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> "Broker":
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=self.log.open("ab"),
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                assert self.proc.poll() is None, self.log.read_text()
                time.sleep(0.05)
        raise AssertionError(f"mosquitto did not listen on {self.port}: {self.log.read_text()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


class Subscriber:
    """``mosquitto_sub`` in its own process, every message as (retained, topic, payload)."""

    def __init__(self, broker: Broker, *topics: str) -> None:
        args = [MOSQUITTO_SUB, "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1", "-F", "%r %t %p"]
        for topic in topics:
            args += ["-t", topic]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.messages: list[tuple[bool, str, str, float]] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            retained, topic, payload = (line.rstrip("\n").split(" ", 2) + ["", ""])[:3]
            with self._cond:
                self.messages.append((retained == "1", topic, payload, time.monotonic()))
                self._cond.notify_all()

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        """Wait until ``predicate(messages)`` holds."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(list(self.messages)), timeout)

    def on(self, topic: str) -> list[str]:
        with self._cond:
            return [p for _, t, p, _ in self.messages if t == topic]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self._reader.join(5)
