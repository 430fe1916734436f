"""Builds the graph from config and owns start/stop order and errors.

source -> capture -> ring -> sampler -> classifier -> fan-out -> sinks

Start order: sinks, model (loaded before capture so no frames pile up while it
loads), inference, capture. Stop order: capture, inference, sinks (each sink
drains its queue, so nothing accepted is lost). One stop Event for every thread;
a worker that fails records its exception and sets it, and ``run`` re-raises the
first error in the caller's thread.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from realtime.stream.capture import Backoff, CaptureWorker
from realtime.config import Config, SmoothingConfig, SourceConfig, apply_override, load_config, safe_stream_name
from realtime.core.errors import RealtimeError
from realtime.core.events import Event, EventFactory, change_fields, smoothed_fields
from realtime.core.health import HealthMonitor
from realtime.stream.inference import InferenceWorker, StreamSlot
from realtime.models import ClipClassifier, classifier_for
from realtime.core.redact import host_of
from realtime.stream.ring import FrameRing, ring_capacity
from realtime.stream.windows import BatchClassifier, batch_classifier
from realtime.core.sampling import WindowSpec
from realtime.core.smoothing import LabelSmoother, SmoothingParams
from realtime.sinks import Sink, SinkRunner, build_sink, sinks_from_specs
from realtime.sinks.clips import LAG_SECONDS, ClipRecorder
from realtime.sources import FrameSource, SourceInfo, check_source, classify_source, open_source
from realtime.core.types import BufferPolicy, FrameMeta, Pacing, Prediction, Schedule, StreamState, StreamStatus

log = logging.getLogger(__name__)

STOP_TIMEOUT = 2.0      # seconds capture, inference and the sinks each get to stop
FORWARD_WAIT_UNKNOWN = 30.0   # bound on the wait for a batch in the model before any finished
FORWARD_WAIT_MAX = 300.0      # bound on that wait, however slow the model has been


def default_stream_name(info: SourceInfo) -> str:
    """``camera0``, the host (``127-0-0-1``) or the file's stem, made topic-safe: feed topics
    are ``<type>.<stream>`` and subscribers match them by prefix, so a name has no dots."""
    if info.kind == "camera":
        name, fallback = f"camera{info.uri.removeprefix('/dev/video')}", "camera"
    elif info.kind == "network":
        name, fallback = host_of(info.uri), "stream"
    else:
        name, fallback = Path(info.uri).stem, "file"
    return safe_stream_name(name) or fallback


def make_config(source: Optional[str | int] = None, model: Optional[str] = None, *,
                config: Optional[str | Path] = None, sinks: Optional[Sequence[str | dict[str, Any]]] = None,
                settings: Optional[dict[str, Any]] = None) -> Config:
    """The settings of a run, as ``realtime run`` builds them, for programs.

    Args:
        source: camera index, stream URL or video file (``source.uri``).
        model: built-in name, model directory or hub id (``model.name``).
        config: a YAML file or preset name (``fitness``); defaults otherwise.
        sinks: the sinks to run, as ``--sink`` specs (``"jsonl:out.jsonl"``) or dicts
            (``{"type": "zmq", "endpoint": "tcp://127.0.0.1:5556"}``); None keeps the config's.
        settings: dotted keys to values, as ``--set`` (``{"window.stride_seconds": 0.25}``).

    Returns:
        A validated :class:`Config`. Raises ConfigError naming the key at fault.
    """
    def prepare(data: dict[str, Any]) -> None:
        if sinks is not None:
            specs = [s for s in sinks if isinstance(s, str)]
            data["sinks"] = (sinks_from_specs(specs, data.get("sinks")) if specs else []) + \
                [dict(s) for s in sinks if isinstance(s, dict)]
        for key, value in (settings or {}).items():
            apply_override(data, key.split("."), value)
        if source is not None:
            apply_override(data, ["source", "uri"], str(source))
        if model is not None:
            apply_override(data, ["model", "name"], model)

    return load_config(config, prepare=prepare)


@dataclass
class StreamRuntime:
    name: str
    source: FrameSource
    ring: FrameRing
    capture: CaptureWorker
    slot: StreamSlot


def smoothing_params(c: SmoothingConfig) -> SmoothingParams:
    """The pure smoother's parameters from the ``smoothing`` section (the live path's, and the
    gallery's segments)."""
    return SmoothingParams(enabled=c.enabled, method=c.method, alpha=c.alpha, window=c.window,
                           enter=c.enter, exit=c.exit, min_dwell_seconds=c.min_dwell_seconds,
                           uncertain_label=c.uncertain_label, allow=tuple(c.allow),
                           deny=tuple(c.deny), min_allowed_mass=c.min_allowed_mass,
                           rename=dict(c.rename))


class Pipeline:
    """A running recognizer: capture threads, the inference thread and the sinks of a config.

    Args:
        config: the settings (:func:`make_config` or :func:`realtime.config.load_config`).
        classifier: a classifier to use instead of ``config.model`` (loaded at ``start()``).
        source, sources: frame sources to use instead of the configured ones.
        sinks: sink objects to use instead of ``config.sinks``.
        on_event: called with every event as the sinks see it (a typed, read-only
            :class:`~realtime.core.events.Event`; ``to_json()`` gives its wire form).
        on_prediction: called with every classified window and its probabilities.

    ``start()`` / ``wait()`` / ``stop()``, or ``run(duration)``, or ``with``; callbacks run on
    the pipeline's threads, so keep them short. :meth:`create` builds one from the same
    pieces as the command line.
    """

    def __init__(self, config: Config, *, classifier: Optional[ClipClassifier] = None,
                 source: Optional[FrameSource] = None, sources: Optional[Sequence[FrameSource]] = None,
                 sinks: Optional[Sequence[Sink]] = None,
                 on_event: Optional[Callable[[Event], None]] = None,
                 on_prediction: Optional[Callable[[Prediction, np.ndarray], None]] = None) -> None:
        self.config = config
        self.stop_event = threading.Event()
        self.wake = threading.Event()
        self.events = EventFactory()
        self.on_event = on_event
        self.on_prediction = on_prediction   # gets every prediction with its full probabilities
        self._classifier = classifier
        # Injected sources replace those of the config, in order (tests, embedding programs).
        self._sources = list(sources) if sources is not None else ([source] if source else [])
        self._sinks = list(sinks) if sinks is not None else None
        self.classifier: Optional[ClipClassifier] = None
        self.batch_classifier: Optional[BatchClassifier] = None   # host or device path, after load
        self.streams: list[StreamRuntime] = []
        self.runners: list[SinkRunner] = []
        self.inference: Optional[InferenceWorker] = None
        self.started_at: Optional[float] = None
        self._stopped = False
        self._force = threading.Event()          # a second Ctrl-C: stop without waiting for the model
        self._held: dict[str, StreamStatus] = {}  # a stream's last status, published after its last window
        self._held_lock = threading.Lock()
        self.abandoned: list[str] = []           # threads still running when stop() gave up on them
        self.smoothers: dict[str, LabelSmoother] = {}
        self.health = HealthMonitor(config.events.heartbeat_seconds)
        self._sink_errors: dict[str, int] = {}
        self._frame_sinks: list[SinkRunner] = []     # sinks with wants_frames
        self._ui_sinks: list[SinkRunner] = []        # sinks with a main_thread_step (windows)
        self.clips: Optional[ClipRecorder] = None    # clips of change events (config.clips)
        self._clip_errors = 0

    @classmethod
    def create(cls, source: Optional[str | int] = None, model: Optional[str] = None, *,
               config: Optional[str | Path] = None, sinks: Optional[Sequence[str | dict[str, Any]]] = None,
               settings: Optional[dict[str, Any]] = None,
               on_event: Optional[Callable[[Event], None]] = None,
               on_prediction: Optional[Callable[[Prediction, np.ndarray], None]] = None) -> "Pipeline":
        """A pipeline from the same pieces as the command line (see :func:`make_config`).

        ``on_prediction(prediction, probabilities)`` gets every classified window;
        ``on_event(event)`` every event as the sinks see it (a typed Event). Both run on
        the pipeline's threads: keep them short. Start it with ``with`` (stopped on leaving)
        or :meth:`run`.
        """
        return cls(make_config(source, model, config=config, sinks=sinks, settings=settings),
                   on_event=on_event, on_prediction=on_prediction)

    def __enter__(self) -> "Pipeline":
        self.start()
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.stop()
        if exc_type is None:
            self.raise_error()

    # ------------------------------------------------------------------ build
    def _build_classifier(self) -> tuple[ClipClassifier, BatchClassifier]:
        """The classifier, loaded and warmed up, and the path its windows take (host or device)."""
        if self._classifier is not None:
            classifier = self._classifier
        else:
            classifier = classifier_for(self.config.model)
        log.info("loading model %s", getattr(classifier, "name", "?"))
        t0 = time.monotonic()
        classifier.load()
        spec = self._window_spec(classifier)
        batches = batch_classifier(classifier, preprocess=self.config.inference.preprocess,
                                   num_frames=spec.num_frames, max_batch=self.config.inference.max_batch)
        log.info("model ready in %.1f s on %s: %d labels, %d frames per %.2f s window",
                 time.monotonic() - t0, classifier.device, len(classifier.labels),
                 spec.num_frames, spec.window_seconds)
        return classifier, batches

    def _window_spec(self, classifier: ClipClassifier) -> WindowSpec:
        m = self.config.model
        return WindowSpec(m.num_frames or classifier.num_frames,
                          m.window_seconds or classifier.window_seconds)

    def _smoothing_params(self) -> SmoothingParams:
        return smoothing_params(self.config.smoothing)

    def _build_streams(self, classifier: ClipClassifier, batches: BatchClassifier,
                       spec: WindowSpec) -> list[StreamRuntime]:
        configs = self.config.stream_configs()
        if self._sources:
            configs = (configs * len(self._sources))[: len(self._sources)]
        streams: list[StreamRuntime] = []
        used: set[str] = set()
        for i, sc in enumerate(configs):
            source = self._sources[i] if self._sources else open_source(
                sc.uri, open_timeout=sc.open_timeout, read_timeout=sc.read_timeout,
                rtsp_transport=sc.rtsp_transport, decoder_threads=sc.decoder_threads)
            name = sc.name or default_stream_name(source.info)
            base, n = name, 2
            while name in used:           # two cameras on one host: host, host-2, ...
                name, n = f"{base}-{n}", n + 1
            used.add(name)
            streams.append(self._build_stream(classifier, batches, spec, sc, source, name))
        return streams

    def _build_stream(self, classifier: ClipClassifier, batches: BatchClassifier, spec: WindowSpec,
                      sc: SourceConfig, source: FrameSource, name: str) -> StreamRuntime:
        fast_file = not source.info.live and Pacing(sc.pace) is Pacing.FAST
        stride = self.config.window.stride_seconds
        span = spec.window_seconds + stride
        ring = FrameRing(ring_capacity(span), policy=BufferPolicy.WAIT if fast_file else BufferPolicy.DROP_OLDEST)
        # Where the frames live: the capture thread prepares each one through the store, and the
        # ring holds what it returns (pixels, or handles to frames on the model's device).
        store = batches.new_store(ring.capacity)
        ring.on_grow = store.grow
        slot = StreamSlot(name, ring, spec, stride, schedule=Schedule.EVERY if fast_file else Schedule.NEWEST, store=store)
        wake = self.wake

        def wake_if_due() -> None:        # after each frame, in the capture thread
            if slot.due():
                wake.set()

        ring.on_push = wake_if_due
        smoother = LabelSmoother(batches.labels, self._smoothing_params(),
                                 top_k=self.config.inference.top_k)
        self.smoothers[name] = smoother
        if self.clips is not None:
            # A file read fast runs ahead of its windows by up to a window's span.
            self.clips.add_stream(name, lag_seconds=span if fast_file else LAG_SECONDS)
        slot.on_reset.append(smoother.reset)      # a gap or reconnect starts smoothing afresh
        rc = sc.reconnect
        capture = CaptureWorker(
            name, source, ring, classifier.input_spec, store.prepare, self.stop_event,
            self._on_status, pace=sc.pace, loop=sc.loop,
            backoff=Backoff(rc.initial_delay, max(rc.max_delay, rc.initial_delay)),
            max_attempts=rc.max_attempts, connect_attempts=sc.connect_attempts, gap_seconds=sc.gap_seconds, span_seconds=span,
            on_frame=self._on_frame if self._frame_sinks or self.clips is not None else None,
            sample_interval=spec.interval if self.config.window.sampled_frames_only else None,
            keep_when=slot.overdue)
        return StreamRuntime(name, source, ring, capture, slot)

    # ------------------------------------------------------------------ events
    def _publish(self, event: Event) -> None:
        for runner in self.runners:
            runner.offer(event)
        if self.on_event is not None:
            self.on_event(event)

    def request(self, kind: str, stream: Optional[str] = None) -> Optional[str]:
        """An on-demand request from the listener (``"now"``: say the current activity,
        ``"repeat"``: the last announcement), from the overlay's keys or the feed's request
        socket: passed to every sink that speaks; the words to be said, or None without one."""
        answer = None
        for runner in self.runners:
            say_now = getattr(runner.sink, "say_now", None)
            if callable(say_now):
                answer = say_now(kind=kind, stream=stream)
        return answer

    def _on_frame(self, stream: str, image: np.ndarray, meta: FrameMeta) -> None:
        """Raw frames for sinks that draw on the video and for clips; none of them may block."""
        if self.clips is not None:
            try:
                self.clips.frame(stream, image, meta)
            except Exception as exc:           # a bug there must not stop capture: logged once
                self._clip_errors += 1
                if self._clip_errors == 1:
                    log.error("clips: a frame of %s failed (further errors are counted): %s: %s",
                              stream, type(exc).__name__, exc)
        for runner in self._frame_sinks:
            try:
                runner.sink.frame(stream, image, meta)  # type: ignore[attr-defined]
            except Exception as exc:
                runner.record_error(exc)

    def _slot_of(self, stream: str) -> Optional[StreamSlot]:
        for s in self.streams:
            if s.name == stream:
                return s.slot
        return None

    def _on_status(self, status: StreamStatus) -> None:
        if StreamState(status.state).terminal:
            # Held until the stream's last window is published: nothing of a stream follows its end.
            with self._held_lock:
                self._held[status.stream] = status
        else:
            slot = self._slot_of(status.stream)
            if slot is None:
                self._publish(self.events.status(status))
            else:
                with slot.emit_lock:
                    self._publish(self.events.status(status))
        self.wake.set()

    def _release_held(self, everything: bool = False) -> None:
        """Publish the held end statuses of streams that are done (all of them at shutdown).

        Called on the inference thread between batches, where no window is in flight, and by
        ``stop()`` once inference has ended."""
        with self._held_lock:
            if not self._held:
                return
            ready = [name for name in self._held
                     if everything or (slot := self._slot_of(name)) is None or slot.finished()]
            statuses = [self._held.pop(name) for name in ready]
        for status in statuses:
            self._publish(self.events.status(status))

    def _on_prediction(self, pred: Prediction, probs: np.ndarray) -> None:
        if self.on_prediction is not None:
            self.on_prediction(pred, probs)
        t = pred.media_end if pred.media_end is not None else pred.window_end
        smoothed = self.smoothers[pred.stream].update(probs, t)
        self.health.record(pred.stream, pred.latency_ms)
        self._publish(self.events.make("prediction", pred.stream, smoothed_fields(pred, smoothed)))
        if smoothed.change is not None:
            fields = change_fields(pred, smoothed, smoothed.change)
            if self.clips is not None:         # the path is known now; the file follows
                fields["clip"] = self.clips.start_clip(pred.stream, pred.frame_indices[1],
                                                       smoothed.change.label, pred.window_end)
            self._publish(self.events.make("change", pred.stream, fields))

    def _heartbeat(self) -> None:
        """Rates, latency, drops and sink health, every ``events.heartbeat_seconds``."""
        now = time.monotonic()
        sinks = {r.name: r.stats() for r in self.runners}
        for stream in self.streams:
            fields = self.health.beat(stream.name, stream.capture.stats.frames, now)
            ring = stream.ring.stats()
            fields["dropped"] = {"late": stream.capture.stats.dropped_late,
                                 "ring_overwritten": ring.overwritten,
                                 "sink_events": sum(s["dropped"] for s in sinks.values())}
            fields["sinks"] = sinks
            if self.clips is not None:
                fields["clips"] = self.clips.stats()
            self._publish(self.events.make("heartbeat", stream.name, fields))
        self.health.mark_beat(now)
        for runner in self.runners:
            if runner.errors > self._sink_errors.get(runner.name, 0):
                self._sink_errors[runner.name] = runner.errors
                for stream in self.streams:
                    self._on_status(StreamStatus(stream.name, StreamState.SINK_ERROR, runner.name,
                                                 runner.last_error or "", wall=time.time(),
                                                 counters={"errors": runner.errors}))

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Check the sources, open sinks, load the model, then start inference and capture."""
        if not self._sources:
            for sc in self.config.stream_configs():
                check_source(classify_source(sc.uri))    # a missing file fails now, not after the model
        sinks = self._sinks if self._sinks is not None else [build_sink(c) for c in self.config.sinks]
        try:
            for sink in sinks:
                if hasattr(sink, "on_request"):     # sinks that take the listener's requests
                    sink.on_request = self.request  # type: ignore[attr-defined]
                runner = SinkRunner(sink, self.config.sink_queue.size)
                runner.start()
                self.runners.append(runner)
                if getattr(sink, "wants_frames", False):
                    self._frame_sinks.append(runner)
                if callable(getattr(sink, "main_thread_step", None)):
                    self._ui_sinks.append(runner)
            self._open_clips()
            self.classifier, self.batch_classifier = self._build_classifier()
            spec = self._window_spec(self.classifier)
            self.streams = self._build_streams(self.classifier, self.batch_classifier, spec)
            self.inference = InferenceWorker(
                [s.slot for s in self.streams], self.batch_classifier, self.stop_event, self.wake,
                self._on_prediction, top_k=self.config.inference.top_k,
                max_batch=self.config.inference.max_batch,
                max_wait=self.config.inference.max_wait_ms / 1000.0, after_step=self._release_held)
            self.inference.start()
            for stream in self.streams:
                stream.capture.start()
        except BaseException:
            self.stop()
            raise
        self.started_at = time.monotonic()
        self.health.mark_beat(self.started_at)       # the first heartbeat counts from here

    def _open_clips(self) -> None:
        """The clip recorder of ``config.clips``, when enabled: its folder checked now (SinkError)."""
        c = self.config.clips
        if not c.enabled:
            return
        clips = ClipRecorder(c.dir, pre_seconds=c.pre_seconds, post_seconds=c.post_seconds,
                             max_clips=c.max_clips, max_bytes=c.max_gb * 1e9, fps=c.fps, width=c.width)
        clips.open()
        self.clips = clips

    def finished(self) -> bool:
        """True once every stream ended and its last window was classified, or on stop."""
        return self.stop_event.is_set() or (self.inference is not None
                                            and (self.inference.done.is_set() or not self.inference.alive))

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait until finished (or ``timeout``); True if finished.

        Call it from the main thread: sinks that own a GUI window are pumped here
        (OpenCV windows must live in the main thread), and one whose user asked
        to quit (q or Esc) stops the run.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        step = 0.03 if self._ui_sinks else 0.25
        while not self.finished():
            remaining = step if deadline is None else min(step, deadline - time.monotonic())
            if remaining <= 0:
                return False
            if self._ui_sinks and threading.current_thread() is threading.main_thread():
                self._ui_step()
            if self.health.due():
                self._heartbeat()
            # The inference loop's end (streams ended, a stop, an error) wakes this at once.
            (self.inference.done if self.inference is not None else self.stop_event).wait(remaining)
        return True

    def _ui_step(self) -> None:
        for runner in self._ui_sinks:
            try:
                keep_going = runner.sink.main_thread_step()  # type: ignore[attr-defined]
            except Exception as exc:
                runner.record_error(exc)
                continue
            if keep_going is False:
                log.info("%s: quit requested", runner.name)
                self.stop_event.set()

    def force_stop(self) -> None:
        """Stop now: ``stop()`` no longer waits for a batch still in the model (a second Ctrl-C)."""
        self._force.set()
        self.stop_event.set()
        self.wake.set()

    @property
    def forced(self) -> bool:
        """``force_stop()`` was called: the run was cut short."""
        return self._force.is_set()

    def stop(self) -> None:
        """Stop every thread in order: capture, inference, sinks.

        Each gets about ``STOP_TIMEOUT``; a batch still in the model is waited for (bounded by
        :meth:`_forward_wait`, and not at all after :meth:`force_stop`), since a thread inside a
        forward pass at interpreter exit aborts the process. Threads given up on are named in
        ``abandoned``. The held end statuses are published, then every sink drains its queue."""
        if self._stopped:
            return
        self._stopped = True
        self.stop_event.set()
        self.wake.set()
        started = time.monotonic()
        deadline = started + STOP_TIMEOUT
        for stream in self.streams:
            if not stream.capture.join(max(0.05, min(0.5, deadline - time.monotonic()))):
                log.warning("capture %s is stuck in the source; abandoning it", stream.name)
                self.abandoned.append(f"capture-{stream.name}")
        if self.inference is not None and not self._join_inference(deadline):
            self.abandoned.append("inference")
        self._release_held(everything=True)
        if self.clips is not None:
            self.clips.finish()              # clips in progress end with the frames they have
        sink_deadline = time.monotonic() + STOP_TIMEOUT
        for runner in self.runners:
            if not runner.close(max(0.2, sink_deadline - time.monotonic())):
                self.abandoned.append(f"sink-{runner.name}")
        if self.clips is not None and not self.clips.join(max(0.2, sink_deadline - time.monotonic())):
            self.abandoned.append("clips-writer")
        if self.classifier is not None and "inference" not in self.abandoned:
            close = getattr(self.classifier, "close", None)
            if callable(close):
                close()
        log.debug("stopped in %.2f s", time.monotonic() - started)

    def _forward_wait(self) -> float:
        """How long to wait for a batch in the model: well past the slowest one so far."""
        assert self.inference is not None
        slowest = self.inference.longest_forward
        if slowest <= 0:
            return FORWARD_WAIT_UNKNOWN
        return min(FORWARD_WAIT_MAX, max(STOP_TIMEOUT, 3.0 * slowest + 1.0))

    def _join_inference(self, deadline: float) -> bool:
        inference = self.inference
        assert inference is not None
        running = inference.in_forward()
        if running is None and inference.join(max(0.1, deadline - time.monotonic())):
            return True
        running = inference.in_forward()
        if running is not None and not self._force.is_set():
            bound = self._forward_wait()
            log.warning("stopping: waiting up to %.0f s for the model to finish the window it has "
                        "been classifying for %.1f s (Ctrl-C again to quit now)", bound, running)
            end = time.monotonic() + bound
            while not self._force.is_set() and time.monotonic() < end:
                if inference.join(min(0.1, max(0.0, end - time.monotonic()))):
                    return True
        if self._force.is_set():
            log.warning("quitting without waiting for the model")
        else:
            log.error("inference did not stop in time")
        return False

    def error(self) -> Optional[BaseException]:
        for stream in self.streams:
            if stream.capture.error is not None:
                return stream.capture.error
        if self.inference is not None and self.inference.error is not None:
            return self.inference.error
        return None

    def run(self, duration: Optional[float] = None) -> None:
        """Start, run until the sources end, ``duration`` passes or stop is set; then stop."""
        self.start()
        try:
            self.wait(duration)
        finally:
            self.stop()
        self.raise_error()

    def raise_error(self) -> None:
        """Raise what failed the run (a source that never connected, the model), if anything."""
        err = self.error()
        if err is not None:
            if isinstance(err, RealtimeError):
                raise err
            raise RealtimeError(f"pipeline failed: {type(err).__name__}: {err}") from err

    def lost_events(self) -> dict[str, tuple[int, str]]:
        """Sinks that failed to write events: name -> (failures, the last error)."""
        return {r.name: (r.errors, r.last_error or "?") for r in self.runners if r.errors}

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"streams": {}, "sinks": {r.name: r.stats() for r in self.runners}}
        for s in self.streams:
            out["streams"][s.name] = {"capture": asdict(s.capture.stats),
                                      "ring": asdict(s.ring.stats()), "windows": s.slot.windows}
        if self.clips is not None:
            out["clips"] = self.clips.stats()
        return out
