"""A real Ray cluster on this machine: a head and worker nodes started with ``ray start``.

Each node is its own raylet with its own processes, as on separate machines; ``kill_node``
kills one node's raylet and everything it started (its workers, agents and log monitor), as
losing that machine would. Every process of the cluster carries the cluster's own temp folder
in its command line, so ``stop`` ends exactly this cluster and no other Ray on the machine.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

RAY = Path(sys.executable).with_name("ray")


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        found[int(entry.name)] = (ppid, cmd)
    return found


def _descendants(root: int, procs: dict[int, tuple[int, str]]) -> list[int]:
    out, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, (ppid, _) in procs.items() if ppid == parent]
        out += children
        frontier += children
    return out


class RayCluster:
    def __init__(self, workers: int = 2, cpus_per_worker: int = 1, env: Optional[dict[str, str]] = None) -> None:
        # Unix socket paths are short: a short temp folder of its own.
        self.temp = tempfile.mkdtemp(prefix="rt-ray-", dir="/tmp")
        # No token authentication: a token left in ~/.ray by another Ray (ray.init() makes one)
        # must not decide whether these nodes may talk. Drivers use ``driver_env``.
        self.driver_env = {"RAY_AUTH_MODE": "disabled"}
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **self.driver_env,
                    # a lost node is noticed in about 2 s instead of about 30
                    "RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "500",
                    "RAY_health_check_failure_threshold": "3", **(env or {})}
        self.address = ""
        self.ports: list[int] = []
        self.workers = workers
        self.cpus = cpus_per_worker

    def start(self) -> "RayCluster":
        out = self._ray("start", "--head", "--port=0", "--num-cpus=0", "--node-ip-address=127.0.0.1",
                        "--include-dashboard=false", f"--temp-dir={self.temp}")
        match = re.search(r"ray start --address='([^']+)'", out)
        assert match, out[-2000:]
        self.address = match.group(1)
        base = 47100 + (os.getpid() % 500) * 2
        for i in range(self.workers):
            port = base + i
            self._ray("start", f"--address={self.address}", f"--num-cpus={self.cpus}", "--node-ip-address=127.0.0.1",
                      f"--node-manager-port={port}")
            self.ports.append(port)
        return self

    def _ray(self, *args: str) -> str:
        r = subprocess.run([str(RAY), *args, "--disable-usage-stats"], capture_output=True, text=True, timeout=120,
                           env=self.env)
        assert r.returncode == 0, (args, r.stdout[-2000:], r.stderr[-2000:])
        return r.stdout + r.stderr

    def kill_node(self, i: int) -> int:
        """Kill worker node ``i`` (its raylet and all it started) at once; the processes killed."""
        procs = _processes()
        raylet = next(pid for pid, (_, cmd) in procs.items()
                      if "raylet/raylet" in cmd and f"--node_manager_port={self.ports[i]}" in cmd)
        socket_suffix = re.search(r"--raylet_socket_name=\S*?/sockets/(raylet\.\d+)", procs[raylet][1])
        victims = [raylet] + _descendants(raylet, procs)
        if socket_suffix:     # the node's log monitor, started beside its raylet
            tag = socket_suffix.group(1).replace("raylet", "log_monitor")
            victims += [pid for pid, (_, cmd) in procs.items() if "log_monitor.py" in cmd and f"{tag}.out" in cmd]
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(victims)

    def stop(self) -> None:
        procs = _processes()
        mine = [pid for pid, (_, cmd) in procs.items() if self.temp in cmd and pid != os.getpid()]
        victims = set(mine)
        for pid in mine:
            victims.update(_descendants(pid, procs))
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in victims):
            time.sleep(0.1)
        subprocess.run(["rm", "-rf", self.temp], check=False)
