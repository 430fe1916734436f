import threading

import numpy as np
import pytest

from realtime.core.types import BufferPolicy
from realtime.stream.ring import FrameRing
from realtime.core.sampling import WindowSpec, select_window

from conftest import make_meta


def img(i: int) -> np.ndarray:
    return np.full((2, 3, 3), i % 256, np.uint8)


def fill(ring: FrameRing, n: int, start: int = 0, fps: float = 10.0) -> None:
    for i in range(start, start + n):
        assert ring.push(img(i), make_meta(i, i / fps))


def all_positions(metas):
    return list(range(len(metas)))


def test_holds_newest_frames_in_order_and_overwrites_oldest():
    ring = FrameRing(4)
    fill(ring, 6)
    assert [m.index for m in ring.metas()] == [2, 3, 4, 5]
    frames, metas = ring.gather(all_positions)
    assert [int(f[0, 0, 0]) for f in frames] == [2, 3, 4, 5]
    s = ring.stats()
    assert (s.written, s.size, s.capacity, s.overwritten) == (6, 4, 4, 2)


def test_overwrites_count_only_frames_the_reader_still_needed():
    ring = FrameRing(4)
    fill(ring, 4)
    ring.release_before(3)           # reader is done with 0, 1, 2
    fill(ring, 3, start=4)           # overwrites 0, 1, 2
    assert ring.stats().overwritten == 0
    fill(ring, 1, start=7)           # overwrites 3, which was still needed
    assert ring.stats().overwritten == 1


def test_release_older_than_uses_timestamps():
    ring = FrameRing(8, policy=BufferPolicy.WAIT)
    fill(ring, 8)                     # ts 0.0 .. 0.7
    ring.release_older_than(0.45)     # frames 0..4 free
    for i in range(8, 13):
        assert ring.push(img(i), make_meta(i, i / 10), timeout=0.01)
    assert not ring.push(img(13), make_meta(13, 1.3), timeout=0.01)
    ring.release_older_than(99.0)     # beyond the newest frame: everything held is free
    assert ring.push(img(13), make_meta(13, 1.3), timeout=0.01)


def test_gather_returns_selected_positions_and_copies():
    ring = FrameRing(8)
    fill(ring, 8)
    out = np.zeros((3, 2, 3, 3), np.uint8)
    frames, metas = ring.gather(lambda m: [0, 3, 7], out=out)
    assert frames is out
    assert [m.index for m in metas] == [0, 3, 7]
    assert out[:, 0, 0, 0].tolist() == [0, 3, 7]
    fill(ring, 8, start=8)            # overwriting the ring does not touch the copy
    assert out[:, 0, 0, 0].tolist() == [0, 3, 7]


def test_gather_not_ready_returns_none():
    ring = FrameRing(4)
    assert ring.gather(all_positions) is None      # empty
    fill(ring, 2)
    assert ring.gather(lambda m: None) is None


def test_reset_forgets_frames_and_counts_gap():
    ring = FrameRing(4)
    fill(ring, 3)
    ring.reset()
    assert ring.metas() == [] and ring.newest() is None
    assert ring.stats().gaps == 1
    fill(ring, 2, start=3)
    assert [m.index for m in ring.metas()] == [3, 4]


def test_resolution_change_reallocates():
    ring = FrameRing(4)
    fill(ring, 2)
    ring.push(np.zeros((5, 5, 3), np.uint8), make_meta(2, 0.2))
    assert [m.index for m in ring.metas()] == [2]
    frames, _ = ring.gather(all_positions)
    assert frames.shape == (1, 5, 5, 3)


def test_ensure_capacity_grows_keeping_order():
    ring = FrameRing(4)
    fill(ring, 6)                     # holds 2..5, head wrapped
    ring.ensure_capacity(8)
    assert [m.index for m in ring.metas()] == [2, 3, 4, 5]
    fill(ring, 5, start=6)            # 11 written into 8 slots
    assert [m.index for m in ring.metas()] == list(range(3, 11))
    frames, _ = ring.gather(all_positions)
    assert frames[:, 0, 0, 0].tolist() == list(range(3, 11))
    ring.ensure_capacity(2)           # never shrinks
    assert ring.capacity == 8


def test_wait_policy_blocks_writer_until_reader_releases():
    ring = FrameRing(4, policy=BufferPolicy.WAIT)
    fill(ring, 4)
    pushed = threading.Event()

    def writer():
        ring.push(img(4), make_meta(4, 0.4))
        pushed.set()

    t = threading.Thread(target=writer)
    t.start()
    assert not pushed.wait(0.2), "writer must wait while the reader needs every frame"
    ring.release_before(1)
    assert pushed.wait(2.0)
    t.join(1.0)
    assert [m.index for m in ring.metas()] == [1, 2, 3, 4]
    assert ring.stats().overwritten == 0


def test_wait_policy_gives_up_when_told_to_stop():
    ring = FrameRing(2, policy=BufferPolicy.WAIT)
    fill(ring, 2)
    assert ring.push(img(2), make_meta(2, 0.2), should_stop=lambda: True) is False


def test_snapshot_is_consistent_while_writing():
    """A reader never sees a frame whose pixels disagree with its metadata."""
    ring = FrameRing(16, policy=BufferPolicy.DROP_OLDEST)
    stop = threading.Event()
    errors = []

    def writer():
        i = 0
        while not stop.is_set():
            ring.push(img(i), make_meta(i, i / 30))
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    spec = WindowSpec(8, 8 / 30)
    try:
        for _ in range(2000):
            got = ring.gather(lambda m: select_window(m, spec))
            if got is None:
                continue
            frames, metas = got
            idx = [m.index for m in metas]
            if idx != sorted(idx):
                errors.append(("order", idx))
            for f, m in zip(frames, metas):
                if int(f[0, 0, 0]) != m.index % 256:
                    errors.append(("pixels", m.index, int(f[0, 0, 0])))
    finally:
        stop.set()
        t.join(1.0)
    assert not errors, errors[:5]
    assert ring.stats().written > 100


def test_bad_arguments():
    with pytest.raises(ValueError):
        FrameRing(1)
    with pytest.raises(ValueError):
        FrameRing(4, policy="block")
