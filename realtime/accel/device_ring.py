"""The device frame ring: each stream's prepared frames on the model's device, shared by two threads.

:class:`DeviceFrameRing` holds a preallocated ``(capacity, 3, H, W)`` tensor in the model's
dtype. Its writer (a capture thread) prepares each frame into a slot with
:class:`realtime.accel.resample.FramePreprocessor`, on CUDA as one replayed CUDA graph after a
``non_blocking`` upload of the pixels the resize reads; its reader (the inference thread)
assembles windows by index, one ring at a time (:meth:`DeviceFrameRing.gather`) or a batch from
many rings (:func:`gather_windows`).

Threading model (CUDA): one :class:`DeviceFrameRing` per stream. Its writer (the
capture thread) calls :meth:`DeviceFrameRing.put` / :meth:`~DeviceFrameRing.push`,
whose work runs on the ring's own CUDA stream and ends by recording a per-slot
"ready" event. The reader (the inference thread) calls
:meth:`DeviceFrameRing.gather`, which makes *its* current stream wait for the
slots' events (a GPU-side wait, the host never blocks) and records a "consumed"
event that the next write waits for before touching the ring. A host-side
:class:`~realtime.stream.ring.FrameRing` can keep choosing windows by timestamp while
holding, per frame, the ``[slot, sequence]`` handle :meth:`DeviceFrameRing.push_handle`
returns instead of pixels; :meth:`DeviceFrameRing.gather` checks the sequences.

Lock order: a ring's lock before the capture gate
(:data:`~realtime.accel.graph_gate.CUDA_GRAPH_CAPTURE_LOCK`), several rings' locks in one order
(by ``id``); a thread holding the gate takes no ring lock (asserted where ring locks are taken).
:meth:`DeviceFrameRing.put` also never holds its ring's lock while it waits for the gate (a
first frame's capture is long, and gathers wait on that lock), which it asserts too.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack, nullcontext
from typing import Optional, Sequence, Union

import numpy as np
import torch

from realtime.accel.device import DeviceLike
from realtime.accel.graph_gate import CUDA_GRAPH_CAPTURE_LOCK, device_synchronize, exclusive_capture
from realtime.accel.resample import FramePreprocessor, ResizePlan
from realtime.core.types import InputSpec
from realtime.threads import OwnedLock

logger = logging.getLogger(__name__)


class StaleFrameError(LookupError):
    """A slot asked for by :meth:`DeviceFrameRing.gather` holds a newer frame than expected."""


def _assert_gate_not_held() -> None:
    """Ring locks come before the capture gate: a thread holding the gate must not take one."""
    assert not CUDA_GRAPH_CAPTURE_LOCK.held(), "lock order: a ring lock is taken before the capture gate"


class DeviceFrameRing:
    """A preallocated ``(capacity, 3, H, W)`` ring of prepared frames on the model's device.

    Writer (one capture thread): :meth:`put` (into a given slot) or :meth:`push` (next
    slot, round robin; returns it). Reader (the inference thread): :meth:`gather`,
    which assembles windows by index. On CUDA the upload goes through a small pool of
    pinned staging buffers (``staging``, reused once their copy has finished), the
    preprocessing is a replayed CUDA graph (``cuda_graphs=False``: eager kernels) and all
    work runs on the ring's own stream; see the module docstring for the ordering.

    Slot lifetime: a slot is reused after ``capacity`` further pushes. Every write gets a
    sequence number (1, 2, ...; :meth:`put` returns it, :meth:`push_handle` returns
    ``[slot, sequence]``); :meth:`gather` given the expected ``sequences`` raises
    :class:`StaleFrameError` instead of returning a window whose slot was rewritten in
    the meantime (or while it is being rewritten: asked for then, a slot raises
    :class:`StaleFrameError` even without ``sequences``). The check and the queued copy
    happen under the ring's lock, and every later write waits (on the GPU) for that copy,
    so a window that passes the check is the one asked for. Make the ring a few slots larger than the
    :class:`~realtime.stream.ring.FrameRing` holding the handles so this stays rare.
    """

    def __init__(self, capacity: int, spec: InputSpec, device: DeviceLike = "cuda",
                 dtype: torch.dtype = torch.float32, *, staging: int = 3, cuda_graphs: bool = True) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.spec = spec
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.dtype = dtype
        self.capacity = int(capacity)
        self.preprocessor = FramePreprocessor(spec, self.device)
        ch, cw = spec.crop
        self.frames = torch.zeros((self.capacity, 3, ch, cw), dtype=dtype, device=self.device)
        self.written = 0
        self._sequence = np.zeros(self.capacity, dtype=np.int64)   # 0: never written, -1: being written
        self._head = 0
        self._lock = OwnedLock()
        self._cuda = self.device.type == "cuda"
        self._stream: Optional[torch.cuda.Stream] = None
        self._ready: list[Optional[torch.cuda.Event]] = [None] * self.capacity
        self._consumed: Optional[torch.cuda.Event] = None
        # CUDA: pinned host buffers (reused once their upload has finished), one device copy of
        # the part of the frame the resize reads, the prepared frame, and the graph between them.
        self.cuda_graphs = bool(cuda_graphs)
        self._staging_count = max(1, int(staging))
        self._staged_size: Optional[tuple[int, int]] = None
        self._roi = (0, 0, 0, 0)
        self._roi_plan: Optional[ResizePlan] = None
        self._host: list[torch.Tensor] = []
        self._host_np: list[np.ndarray] = []
        self._host_done: list[Optional[torch.cuda.Event]] = []
        self._staging_next = 0
        self._device_in: Optional[torch.Tensor] = None
        self._prepared: Optional[torch.Tensor] = None
        self._graph: Optional[torch.cuda.CUDAGraph] = None
        self._graph_tries = 0
        if self._cuda:
            self._stream = torch.cuda.Stream(self.device)
            with CUDA_GRAPH_CAPTURE_LOCK.shared():
                self._stream.wait_stream(torch.cuda.current_stream(self.device))   # after the zero fill

    def __repr__(self) -> str:
        return (f"DeviceFrameRing(capacity={self.capacity}, crop={self.spec.crop}, device={self.device}, "
                f"dtype={self.dtype}, interpolation={self.spec.interpolation!r})")

    # ------------------------------------------------------------------ writer

    def _upload(self, bgr: np.ndarray) -> torch.Tensor:
        """CPU rings: the frame as an (H, W, 3) uint8 tensor."""
        if not (bgr.flags.writeable and bgr.flags.c_contiguous):
            bgr = np.array(bgr, order="C", copy=True)
        return torch.from_numpy(bgr).to(self.device)

    def _stage(self, height: int, width: int) -> None:
        """Buffers for frames of a new size: pinned host buffers for the part of the frame the
        resize reads, its device copy and the prepared output; any old graph is dropped."""
        for event in self._host_done:          # let uploads from the old buffers finish
            if event is not None:
                event.synchronize()
        full = self.preprocessor.plan(height, width)
        self._roi = (full.rows[0], full.rows[1] + 1, full.cols[0], full.cols[1] + 1)
        self._roi_plan = full.cropped_to_reads()
        shape = (*self._roi_plan.src_size, 3)
        self._host = [torch.empty(shape, dtype=torch.uint8, pin_memory=True) for _ in range(self._staging_count)]
        self._host_np = [h.numpy() for h in self._host]
        self._host_done = [None] * self._staging_count
        self._device_in = torch.empty(shape, dtype=torch.uint8, device=self.device)
        self._prepared = torch.empty((3, *self.spec.crop), dtype=self.dtype, device=self.device)
        self._graph = None
        self._graph_tries = 0
        self._staged_size = (height, width)

    def _prepare_from_device_in(self) -> None:
        self.preprocessor.normalized(self._device_in, self.dtype, out=self._prepared, plan=self._roi_plan)

    def _capture(self) -> None:
        """Record the preprocessing kernels as one CUDA graph (after they have run once eagerly).

        All of it, the streams' waits on each other included, holds
        :data:`CUDA_GRAPH_CAPTURE_LOCK` exclusively: the capture stream comes from torch's shared
        pool and may be another ring's stream or the one a capture elsewhere is using."""
        self._graph_tries += 1
        assert self._stream is not None
        graph = torch.cuda.CUDAGraph()
        with CUDA_GRAPH_CAPTURE_LOCK:
            capture_stream = torch.cuda.Stream(self.device)
            capture_stream.wait_stream(self._stream)
            try:
                with exclusive_capture(graph), torch.cuda.stream(capture_stream):
                    graph.capture_begin(capture_error_mode="thread_local")
                    try:
                        self._prepare_from_device_in()
                    finally:
                        graph.capture_end()
            except RuntimeError as exc:
                self.cuda_graphs = False
                logger.warning("frame preprocessing runs without a CUDA graph (capture failed: %s)", exc)
                return
            self._stream.wait_stream(capture_stream)
        self._graph = graph

    def _stage_host(self, bgr: np.ndarray) -> int:
        """Copy what the resize reads of ``bgr`` into a free pinned buffer; returns which one."""
        if self._staged_size != bgr.shape[:2]:      # (put holds the gate exclusively then)
            self._stage(bgr.shape[0], bgr.shape[1])
        k = self._staging_next
        self._staging_next = (k + 1) % self._staging_count
        done = self._host_done[k]
        if done is not None:
            done.synchronize()          # its previous upload has finished: the host buffer is free
        r0, r1, q0, q1 = self._roi
        np.copyto(self._host_np[k], bgr[r0:r1, q0:q1])
        return k

    def _enqueue(self, k: int, slot: int, consumed: Optional["torch.cuda.Event"]) -> "torch.cuda.Event":
        """Upload pinned buffer ``k`` and prepare it into ``slot`` on the ring's stream, after
        ``consumed`` (the gathers that may still read the slot); returns the write's event.

        Holds :data:`CUDA_GRAPH_CAPTURE_LOCK` shared: torch hands out streams from a small
        shared pool, so another ring's stream, or a graph's capture stream, can be this very
        stream, and work queued on a stream while it is being captured breaks the capture.
        The first frame of a size runs eagerly; its kernels are then captured as a graph
        (exclusively, after this frame's work is queued)."""
        assert self._stream is not None and self._prepared is not None and self._device_in is not None
        with CUDA_GRAPH_CAPTURE_LOCK.shared(), torch.cuda.stream(self._stream):
            if consumed is not None:
                self._stream.wait_event(consumed)
            self._device_in.copy_(self._host[k], non_blocking=True)
            if self._graph is not None:
                self._graph.replay()
            else:
                self._prepare_from_device_in()
            self.frames[slot].copy_(self._prepared)
            ready = torch.cuda.Event()
            ready.record(self._stream)
        self._host_done[k] = ready
        if self._capture_pending:
            self._capture()
        return ready

    @property
    def _capture_pending(self) -> bool:
        """The preprocessing of this frame size has not been captured as a graph yet (nor failed to)."""
        return self._graph is None and self.cuda_graphs and self._graph_tries == 0

    def put(self, slot: int, bgr: np.ndarray) -> int:
        """Prepare the (H, W, 3) uint8 BGR frame ``bgr`` into ``slot``; returns the write's sequence number.

        One writer thread per ring. On CUDA the ring's lock is held only to book the write
        (the slot's sequence becomes -1, "being written", so a gather expecting the old frame
        fails from here on; and the newest "consumed" event is read, so the write waits for
        every gather that passed its check) and to publish it (sequence and ready event):
        the copy into the pinned buffer and the kernel launches run outside it, so the
        inference thread's gathers never wait behind a frame upload."""
        if not 0 <= slot < self.capacity:
            raise IndexError(f"slot {slot} outside a ring of {self.capacity}")
        if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 BGR frame, got {bgr.shape} {bgr.dtype}")
        _assert_gate_not_held()
        with torch.no_grad():
            if not self._cuda:
                with self._lock:
                    self.preprocessor.normalized(self._upload(bgr), self.dtype, out=self.frames[slot])
                    self.written += 1
                    self._sequence[slot] = self.written
                    return self.written
            first_of_size = self._staged_size != bgr.shape[:2] or self._capture_pending
            k = None if first_of_size else self._stage_host(bgr)
            with self._lock:
                self.written += 1
                sequence = self.written
                self._sequence[slot] = -1        # being written
                self._ready[slot] = None
                consumed = self._consumed
            # The first frame of a size (new buffers, an eager run, the graph's capture) is one
            # exclusive hold, so 64 cameras starting together wait for 64 holds, not three times
            # that. (Never with the ring's lock held: gathers take that lock, then the gate.)
            assert not self._lock.held(), "lock order: put waits for the gate without its ring's lock"
            with CUDA_GRAPH_CAPTURE_LOCK if first_of_size else nullcontext():
                ready = self._enqueue(self._stage_host(bgr) if k is None else k, slot, consumed)
            with self._lock:
                self._sequence[slot] = sequence
                self._ready[slot] = ready
            return sequence

    def _next_slot(self) -> int:
        with self._lock:
            slot = self._head
            self._head = (self._head + 1) % self.capacity
            return slot

    def push(self, bgr: np.ndarray) -> int:
        """Prepare ``bgr`` into the next slot (round robin) and return that slot."""
        slot = self._next_slot()
        self.put(slot, bgr)
        return slot

    def push_handle(self, bgr: np.ndarray) -> np.ndarray:
        """:meth:`push`, returning ``[slot, sequence]`` (int64): what a host-side ring stores per frame."""
        slot = self._next_slot()
        sequence = self.put(slot, bgr)
        return np.array([slot, sequence], dtype=np.int64)

    def ensure_capacity(self, capacity: int) -> None:
        """Grow to ``capacity`` slots (never shrinks); slots already written keep their numbers."""
        _assert_gate_not_held()
        with self._lock:
            if capacity <= self.capacity:
                return
            ch, cw = self.spec.crop
            frames = torch.zeros((capacity, 3, ch, cw), dtype=self.dtype, device=self.device)
            if self._cuda:
                # Rare (the source's frame rate went up): finish everything in flight, so the
                # old tensor is neither being written nor read when it is freed.
                device_synchronize(self.device)
                frames[: self.capacity].copy_(self.frames)
                device_synchronize(self.device)
                self._ready += [None] * (capacity - self.capacity)
            else:
                frames[: self.capacity].copy_(self.frames)
            self.frames = frames
            self._sequence = np.concatenate([self._sequence, np.zeros(capacity - self.capacity, np.int64)])
            self.capacity = capacity

    # ------------------------------------------------------------------ reader

    def gather(self, slots: Union[Sequence[int], Sequence[Sequence[int]], np.ndarray],
               out: Optional[torch.Tensor] = None,
               sequences: Optional[Union[Sequence[int], Sequence[Sequence[int]], np.ndarray]] = None,
               ) -> torch.Tensor:
        """The frames of ``slots`` as one tensor: (T,) slots -> (T, 3, H, W); (B, T) -> (B, T, 3, H, W).

        ``out`` (contiguous, the right shape and dtype, on the device), e.g. one row of a
        CUDA-graph input buffer, receives the frames without another copy. On CUDA the
        copy is queued on the caller's current stream after the slots' writes.
        ``sequences`` (same shape as ``slots``): the sequence numbers the slots must still
        hold, else :class:`StaleFrameError` (nothing is copied). :meth:`gather_batch`
        gathers a batch of windows from many rings at once.
        """
        slot_array = np.ascontiguousarray(np.asarray(slots, dtype=np.int64))
        shape = slot_array.shape
        flat = self._checked_slots(slot_array)
        expected = None if sequences is None else np.asarray(sequences, dtype=np.int64).reshape(-1)
        if expected is not None and expected.shape != flat.shape:
            raise ValueError(f"sequences {np.shape(sequences)} do not match slots {shape}")
        ch, cw = self.spec.crop
        # Ring lock first, then the gate shared (the order everywhere): the caller's stream may be
        # a pooled stream that a capture elsewhere is using.
        _assert_gate_not_held()
        gate = CUDA_GRAPH_CAPTURE_LOCK.shared() if self._cuda else nullcontext()
        with self._lock, gate, torch.no_grad():
            problem = self._unreadable_locked(flat, expected)
            if problem is not None:
                raise StaleFrameError(problem)
            stream = torch.cuda.current_stream(self.device) if self._cuda else None
            event = self._ready_event_locked(flat)
            if stream is not None and event is not None:
                stream.wait_event(event)
            index = torch.from_numpy(flat)
            if self._cuda:
                index = index.to(self.device, non_blocking=True)
            target = None if out is None else out.view(-1, 3, ch, cw)
            result = torch.index_select(self.frames, 0, index, out=target) if target is not None \
                else torch.index_select(self.frames, 0, index)
            if stream is not None:
                self._consumed = _recorded_event(stream)
        return result.view(*shape, 3, ch, cw)

    def _checked_slots(self, slots: np.ndarray) -> np.ndarray:
        """``slots`` flattened, every one inside the ring (else IndexError)."""
        flat = slots.reshape(-1)
        if flat.size and (int(flat.min()) < 0 or int(flat.max()) >= self.capacity):
            raise IndexError(f"slots {flat.tolist()} outside a ring of {self.capacity}")
        return flat

    def _unreadable_locked(self, flat: np.ndarray, expected: Optional[np.ndarray]) -> Optional[str]:
        """Why these slots cannot be read as asked (a slot rewritten since its handle was taken,
        or being written), or None. Ring lock held."""
        if expected is not None:
            stale = int(np.count_nonzero(self._sequence[flat] != expected))
            if stale:
                return f"{stale} of {flat.size} slots were rewritten since their handle was taken"
        elif self._cuda and flat.size and (self._sequence[flat] < 0).any():
            return "a slot asked for is being written"
        return None

    def _ready_event_locked(self, flat: np.ndarray) -> Optional["torch.cuda.Event"]:
        """The event after which these slots' frames are on the device (CUDA; ring lock held).
        Writes run in order on the ring's stream, so the newest slot's write is the one to wait for."""
        if not self._cuda or not flat.size:
            return None
        return self._ready[int(flat[int(np.argmax(self._sequence[flat]))])]

    @staticmethod
    def gather_batch(windows: Sequence[tuple["DeviceFrameRing", np.ndarray, np.ndarray]],
                     out: torch.Tensor) -> list[int]:
        """Gather a batch of windows, each from its own ring, into ``out[0]``, ``out[1]``, ...

        Window ``i`` is ``(ring, slots, sequences)``: its (T,) slots and the sequence numbers they
        must still hold. A window with a slot rewritten (or being written) since its handles were
        taken is skipped; returns the positions of the windows gathered, in order (``out[j]`` holds
        window ``kept[j]``). What :meth:`DeviceFrameRing.gather` does per window, done once per
        batch where it can be: one host-to-device copy of all the indices and one "consumed" event
        for all the rings; only the waits for each window's frames and its ``index_select`` are per
        window. Every ring's lock is held from its check until that event is recorded, so a write
        booked after a check waits (on the GPU) for the copy, as with ``gather``; the locks are taken
        in one order (by ``id``), and before the capture gate, as everywhere.
        """
        if not windows:
            return []
        _assert_gate_not_held()
        device = windows[0][0].device
        length = out.shape[1] if out.ndim == 5 else -1
        rings = sorted({id(ring): ring for ring, _, _ in windows}.values(), key=id)
        checked = []
        for ring, slots, sequences in windows:
            if ring.device != device or ring.dtype != out.dtype:
                raise ValueError(f"{ring!r} does not match the batch ({device}, {out.dtype})")
            flat = ring._checked_slots(np.asarray(slots, dtype=np.int64))
            expected = np.asarray(sequences, dtype=np.int64).reshape(-1)
            if flat.size != length or expected.shape != flat.shape:
                raise ValueError(f"a window of {flat.size} slots and {expected.size} sequences does not fit "
                                 f"{tuple(out.shape)}")
            checked.append((ring, flat, expected))
        if len(windows) > out.shape[0]:
            raise ValueError(f"{len(windows)} windows do not fit {tuple(out.shape)}")
        cuda = device.type == "cuda"
        with ExitStack() as held:
            for ring in rings:
                held.enter_context(ring._lock)
            if cuda:
                held.enter_context(CUDA_GRAPH_CAPTURE_LOCK.shared())
            held.enter_context(torch.no_grad())
            kept: list[int] = []
            waits: dict[int, "torch.cuda.Event"] = {}
            for i, (ring, flat, expected) in enumerate(checked):
                problem = ring._unreadable_locked(flat, expected)
                if problem is not None:
                    logger.debug("%r: window skipped: %s", ring, problem)
                    continue
                event = ring._ready_event_locked(flat)
                if event is not None:
                    waits[id(event)] = event
                kept.append(i)
            if not kept:
                return kept
            stream = torch.cuda.current_stream(device) if cuda else None
            if stream is not None:
                for event in waits.values():
                    stream.wait_event(event)
            index = torch.from_numpy(np.concatenate([checked[i][1] for i in kept]))
            if cuda:
                index = index.to(device, non_blocking=True)
            for j, i in enumerate(kept):
                ring = checked[i][0]
                ch, cw = ring.spec.crop
                torch.index_select(ring.frames, 0, index[j * length:(j + 1) * length], out=out[j].view(-1, 3, ch, cw))
            if stream is not None:
                consumed = _recorded_event(stream)
                for ring in rings:
                    ring._consumed = consumed
        return kept

    def synchronize(self) -> None:
        """Wait until every write queued so far has finished (CUDA; a no-op on CPU)."""
        if self._stream is not None:
            with CUDA_GRAPH_CAPTURE_LOCK.shared():
                self._stream.synchronize()


def _recorded_event(stream: "torch.cuda.Stream") -> "torch.cuda.Event":
    event = torch.cuda.Event()
    event.record(stream)
    return event


def gather_windows(windows: Sequence[tuple[DeviceFrameRing, np.ndarray, np.ndarray]],
                   out: torch.Tensor) -> list[int]:
    """:meth:`DeviceFrameRing.gather_batch`: a batch of windows, each from its own ring, into
    ``out[0]``, ``out[1]``, ...; returns the positions of the windows gathered."""
    return DeviceFrameRing.gather_batch(windows, out)
