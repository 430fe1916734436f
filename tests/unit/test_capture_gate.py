"""CaptureGate: many threads queue CUDA work at once; a graph capture shuts them all out."""

from __future__ import annotations

import threading
import time

import pytest

from realtime.accel.graph_gate import CaptureGate


def _started(target, *args) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def test_shared_holders_are_inside_together() -> None:
    gate = CaptureGate()
    inside = threading.Barrier(8, timeout=5)     # breaks (and the test fails) unless all 8 are in at once
    errors = []

    def hold() -> None:
        try:
            with gate.shared():
                inside.wait()
        except threading.BrokenBarrierError as exc:
            errors.append(exc)

    threads = [_started(hold) for _ in range(8)]
    for t in threads:
        t.join(10)
    assert not errors and not any(t.is_alive() for t in threads)


def test_exclusive_shuts_shared_out_until_released() -> None:
    gate = CaptureGate()
    entered = threading.Event()

    def queue_work() -> None:
        with gate.shared():
            entered.set()

    with gate:
        worker = _started(queue_work)
        assert not entered.wait(0.2)              # a capture is running: no work queued
    assert entered.wait(5)
    worker.join(5)


def test_exclusive_waits_for_shared_and_goes_before_new_shared() -> None:
    gate = CaptureGate()
    release_first = threading.Event()
    first_in = threading.Event()
    order: list[str] = []

    def first_shared() -> None:
        with gate.shared():
            first_in.set()
            release_first.wait(5)
            order.append("first shared out")

    def capture() -> None:
        with gate:
            order.append("capture")

    def late_shared() -> None:
        with gate.shared():
            order.append("late shared")

    a = _started(first_shared)
    assert first_in.wait(5)
    b = _started(capture)
    deadline = time.monotonic() + 5
    while gate._waiting == 0 and time.monotonic() < deadline:   # the capture is queued behind the holder
        time.sleep(0.005)
    c = _started(late_shared)
    time.sleep(0.1)
    assert order == []                                           # neither got past the first holder
    release_first.set()
    for t in (a, b, c):
        t.join(5)
    assert order == ["first shared out", "capture", "late shared"]


def test_exclusive_is_reentrant_and_may_enter_shared() -> None:
    gate = CaptureGate()
    with gate:
        with gate:                                # device_synchronize inside a capture helper
            with gate.shared():                   # a ring queues its first frame, then captures
                pass
    entered = threading.Event()
    _started(lambda: gate.shared().__enter__() or entered.set())
    assert entered.wait(5)                        # fully released


def test_shared_then_exclusive_in_one_thread_raises_instead_of_hanging() -> None:
    gate = CaptureGate()
    with gate.shared():
        with pytest.raises(RuntimeError, match="shared"):
            gate.acquire()
    with gate:                                    # the failed attempt left nothing behind
        pass


def test_release_by_a_thread_that_does_not_hold_it_raises() -> None:
    gate = CaptureGate()
    with pytest.raises(RuntimeError, match="does not hold"):
        gate.release()


def test_a_thread_taking_it_in_a_loop_cannot_keep_others_out() -> None:
    """As the device-synchronising thread in the many-rings CUDA test: other exclusive holders take
    turns with it, and shared holders get in between."""
    gate = CaptureGate()
    stop = threading.Event()

    def hog() -> None:
        while not stop.is_set():
            with gate:
                time.sleep(0.001)

    hogs = [_started(hog) for _ in range(2)]
    got = []
    try:
        for _ in range(5):
            t0 = time.monotonic()
            with gate:
                got.append(time.monotonic() - t0)
            t0 = time.monotonic()
            with gate.shared():
                got.append(time.monotonic() - t0)
    finally:
        stop.set()
        for t in hogs:
            t.join(5)
    assert max(got) < 1.0, got


def test_queued_exclusive_holders_go_in_order_then_sharers_get_a_turn() -> None:
    """Up to max_run exclusive holds in a row (a start-up burst of captures), in the order asked."""
    gate = CaptureGate(max_run=3)
    order: list[str] = []

    def exclusive(name: str) -> None:
        with gate:
            order.append(name)

    def shared() -> None:
        with gate.shared():
            order.append("S")

    def wait_until(predicate) -> None:
        deadline = time.monotonic() + 5
        while not predicate() and time.monotonic() < deadline:
            time.sleep(0.002)
        assert predicate()

    threads = []
    with gate:
        for i in range(1, 7):
            threads.append(_started(exclusive, f"E{i}"))
            wait_until(lambda: gate._waiting == i)          # queued in this order
        threads.append(_started(shared))
        wait_until(lambda: gate._shared_waiting == 1)
    for t in threads:
        t.join(5)
    assert order == ["E1", "E2", "S", "E3", "E4", "E5", "E6"], order
