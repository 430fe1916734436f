"""``realtime index --ray [ADDRESS]``: the same indexing, on a Ray cluster.

Model replicas are Ray actors (:class:`Replica`): one per GPU when the cluster has GPUs, else one
per ``cpus`` CPUs of a node (the smallest node's CPUs, at most 4). Each replica runs the local
engine (:func:`~realtime.gallery.index.index_videos`: decoding in a thread beside the model,
windows of a few videos batched together) on the small groups of videos the driver hands it, and
returns their records; the driver writes each record to the database as it arrives, so the
incremental rules are the local ones.

Fault tolerance is the driver's, and plain: a group whose replica dies (its node lost, its
process killed) goes back to the queue and is done again by another replica; a replacement
replica is asked for and used once Ray has placed it. A record is written only from a call
that returned, so a video is never lost and never written twice. Videos must be readable at the
same path on every node (a shared or mounted folder), and the package installed there
(``pip install 'realtime[ray]'``).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from typing import Any, Callable, Optional, Sequence

from realtime.config import Config
from realtime.core.errors import ConfigError, ModelError, RealtimeError
from realtime.gallery.store import VideoRecord

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'realtime[ray]'"
VIDEOS_PER_CALL = 2
READY_TIMEOUT = 120.0        # seconds without any live replica before the run gives up


class Replica:
    """One model replica (a Ray actor): loads the model once, indexes groups of videos."""

    def __init__(self, config_data: dict, settings: Any, device: Optional[str]) -> None:
        from realtime.config import build_config
        from realtime.models import classifier_for

        data = dict(config_data)
        if device is not None:
            data["model"] = {**data["model"], "device": device}
        self.config = build_config(data, "realtime index --ray")
        # Decoding in a thread of this process: the replica's CPUs are the decoder's too.
        self.settings = dataclasses.replace(settings, workers=0)
        self.classifier = classifier_for(self.config.model)
        self.classifier.load()

    def ready(self) -> str:
        import socket
        return socket.gethostname()

    def index(self, group: Sequence[tuple[str, int, int]]) -> list[VideoRecord]:
        from realtime.gallery.index import index_videos

        records: list[VideoRecord] = []
        index_videos(group, self.classifier, self.config, self.settings, records.append)
        return records


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"--ray needs Ray, which is not installed ({INSTALL_HINT})") from exc
    return ray


def replica_shape(ray: Any) -> tuple[int, dict[str, float], Optional[str]]:
    """How many replicas, the resources of each, and the device they run on."""
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if gpus > 0:
        return gpus, {"num_gpus": 1, "num_cpus": 1}, "cuda"
    cpus = [node["Resources"].get("CPU", 0.0) for node in ray.nodes() if node.get("Alive")]
    cpus = [c for c in cpus if c >= 1]
    if not cpus:
        raise RealtimeError("the Ray cluster has no CPU to run a model on")
    per = float(min(4, int(min(cpus))))
    return max(1, sum(int(c // per) for c in cpus)), {"num_cpus": per}, None


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail at once, saying why, when nothing answers at a ``HOST:PORT`` address (Ray itself
    keeps retrying for minutes). Other forms (``auto``, ``ray://...``) are left to Ray."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "/" in address:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc)).lower()
        raise ConfigError(f"--ray {address}: cannot reach a Ray cluster there ({reason}); start one with "
                          f"`ray start --head` or give the address it printed") from exc


def index_on_ray(todo: Sequence[tuple[str, int, int]], config: Config, settings: Any,
                 on_record: Callable[[VideoRecord], None], address: Optional[str] = None) -> None:
    """Index ``todo`` on Ray (``address`` None: a new local Ray), calling ``on_record`` in this
    process for each video's record as it arrives."""
    ray = _ray()
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            check_reachable(address)
        try:
            ray.init(address=address or "local", log_to_driver=False, configure_logging=False,
                     include_dashboard=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray"
            raise ConfigError(f"--ray: cannot start or join {where}: {exc}") from exc
    try:
        _run(ray, todo, config, settings, on_record)
    finally:
        if started_here:
            ray.shutdown()


def _run(ray: Any, todo: Sequence[tuple[str, int, int]], config: Config, settings: Any,
         on_record: Callable[[VideoRecord], None]) -> None:
    from ray.exceptions import RayActorError, RayTaskError

    try:
        from ray.exceptions import ActorUnavailableError
        lost: tuple[type, ...] = (RayActorError, ActorUnavailableError)
    except ImportError:          # older Ray
        lost = (RayActorError,)
    count, resources, device = replica_shape(ray)
    actor = ray.remote(Replica).options(max_restarts=0, max_task_retries=0, **resources)
    config_data = config.model_dump(mode="json")
    groups = collections.deque(list(todo[i:i + VIDEOS_PER_CALL]) for i in range(0, len(todo), VIDEOS_PER_CALL))
    starting: dict[Any, Any] = {}      # ready() ref -> replica not yet placed and loaded
    live: set[Any] = set()
    calls: dict[Any, tuple[Any, list]] = {}   # index() ref -> (replica, group)

    def start_replica() -> None:
        replica = actor.remote(config_data, settings, device)
        starting[replica.ready.remote()] = replica

    for _ in range(min(count, len(groups))):
        start_replica()
    logger.info("indexing %d videos on Ray with %d replicas (%s each)", len(todo), len(starting), resources)
    last_live = time.monotonic()
    while groups or calls:
        # Up to two calls per replica (the next group waits in the actor while one runs), the
        # least busy replica first.
        while groups and live:
            load = {replica: 0 for replica in live}
            for replica, _ in calls.values():
                if replica in load:
                    load[replica] += 1
            replica = min(load, key=load.__getitem__)
            if load[replica] >= 2:
                break
            group = groups.popleft()
            calls[replica.index.remote(group)] = (replica, group)
        ready, _ = ray.wait(list(calls) + list(starting), num_returns=1, timeout=1.0)
        if live:
            last_live = time.monotonic()
        elif time.monotonic() - last_live > READY_TIMEOUT:
            raise RealtimeError(f"no Ray replica could start within {READY_TIMEOUT:.0f} s "
                                f"(the cluster has no room for {resources}, or the model cannot load there)")
        for ref in ready:
            if ref in starting:
                replica = starting.pop(ref)
                try:
                    host = ray.get(ref)
                except lost as exc:
                    logger.warning("a replica could not start (%s); asking for another", _first_line(exc))
                    start_replica()
                    continue
                except RayTaskError as exc:
                    raise _task_error(exc) from None
                live.add(replica)
                logger.info("replica ready on %s", host)
                continue
            replica, group = calls.pop(ref)
            try:
                records = ray.get(ref)
            except lost as exc:
                # Its node is gone or its process died: the group is done again elsewhere.
                groups.appendleft(group)
                if replica in live:
                    live.discard(replica)
                    logger.warning("a replica was lost (%s); its videos go to another", _first_line(exc))
                    start_replica()
                continue
            except RayTaskError as exc:
                raise _task_error(exc) from None
            logger.debug("%d records back from a replica", len(records))
            for record in records:
                on_record(record)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _task_error(exc: Exception) -> RealtimeError:
    """A replica's own error (the model cannot load, a bad setting) as this process's."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, RealtimeError):
        return cause
    if isinstance(cause, BaseException):
        return ModelError(f"on Ray: {type(cause).__name__}: {cause}")
    return ModelError(f"on Ray: {_first_line(exc)}")
