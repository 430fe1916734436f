"""Indexing's decoding: the pipeline's windows without the pipeline, in worker processes or a thread."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import write_video
from support.gallery_rows import gallery_rows
from realtime.config import load_config
from realtime.gallery.decode import DecodePlan, VideoEnd, WindowChunk, decode_video
from realtime.gallery.index import index_gallery
from realtime.gallery.store import GalleryStore
from realtime.gallery.workers import DecodeFailed, DecodePool
from realtime.models import classifier_for
from realtime.tools.classify import classify_file


def _config(model):
    # the tiny random model is never sure: a lower bar makes segments to compare
    return load_config(overrides=[f"model.name={model}", "model.device=cpu", "smoothing.enter=0.1",
                                  "smoothing.exit=0.05"])


def _varied(i: int) -> tuple[int, int, int]:
    return ((i * 37) % 256, (i * 11 + 60) % 256, (255 - i * 5) % 256)


@pytest.mark.parametrize("fps,frames,stride", [(25.0, 101, 1.0), (30.0, 77, 0.7), (12.0, 20, 0.5), (30.0, 30, 1.0)])
def test_decoded_windows_are_the_ones_classify_takes(tiny_model, tmp_path, fps, frames, stride):
    """Same windows (times and pixels, so the same probabilities) as ``classify --timeline``,
    including the last window over the tail and a clip shorter than one window."""
    video = write_video(tmp_path / "v.mp4", frames=frames, fps=fps, size=(80, 60), color_of=_varied)
    config = _config(tiny_model)
    clf = classifier_for(config.model)
    clf.load()
    ref = classify_file(str(video), config, classifier=clf, stride=stride, progress=False, keep_probs=True)
    plan = DecodePlan(clf.input_spec, clf.num_frames, clf.window_seconds, stride, chunk=3)
    messages = list(decode_video(str(video), plan))
    chunks = [m for m in messages if isinstance(m, WindowChunk)]
    assert isinstance(messages[-1], VideoEnd) and messages[-1].frames == frames
    starts = [s for c in chunks for s in c.starts]
    ends = [e for c in chunks for e in c.ends]
    np.testing.assert_allclose([(w.media_start, w.media_end) for w in ref.windows], list(zip(starts, ends)))
    probs = clf.predict(np.concatenate([c.clips for c in chunks]))
    np.testing.assert_allclose(probs, ref.window_probs, atol=1e-6)
    assert all(t is not None and t[:2] == b"\xff\xd8" for c in chunks for t in c.thumbs)


def test_worker_processes_and_a_thread_store_the_same(tiny_model, tmp_path):
    g = tmp_path / "g"
    g.mkdir()
    for i in range(4):
        write_video(g / f"v{i}.mp4", frames=45 + 20 * i, size=(64, 48), color_of=lambda k, i=i: _varied(k + 50 * i))
    (g / "broken.mp4").write_bytes(b"\x00junk" * 100)
    config = _config(tiny_model)
    clf = classifier_for(config.model)
    results = {}
    for workers, batch in ((0, 1), (2, 3)):
        db = tmp_path / f"w{workers}.db"
        with GalleryStore(db) as store:
            s = index_gallery(str(g), store, config, stride=0.5, progress=False, classifier=clf,
                              workers=workers, max_batch=batch)
        assert (s.indexed, s.failed) == (4, 1), s.failures
        assert "broken.mp4" in s.failures[0][0] and s.failures[0][1]
        results[workers] = gallery_rows(db)
    assert results[0]["segments"], "no segment to compare"
    assert results[0] == results[2]


def test_a_decoder_that_dies_fails_only_its_video_and_is_replaced(tmp_path):
    long = write_video(tmp_path / "long.mp4", frames=600, size=(64, 48), color_of=_varied)
    short = write_video(tmp_path / "short.mp4", frames=60, size=(64, 48), color_of=_varied)
    from realtime.core.types import InputSpec
    plan = DecodePlan(InputSpec(resize_short=32, crop=(32, 32)), 8, 1.0, 0.5, chunk=2)
    pool = DecodePool(plan, workers=1)
    try:
        pool.submit("long", str(long))
        got = []
        while not any(isinstance(m, WindowChunk) for _, m in got):
            item = pool.get(timeout=30)
            assert item is not None, "no window from the worker"
            got.append(item)
        pool.kill(0)                           # the worker process dies mid-video (a decoder crash)
        while True:
            item = pool.get(timeout=30)
            assert item is not None, "the dead worker was not noticed"
            if isinstance(item[1], (DecodeFailed, VideoEnd)):
                break
        assert item[0] == "long" and isinstance(item[1], DecodeFailed) and "crashed" in item[1].reason
        pool.submit("short", str(short))       # a new worker takes the next video
        messages = []
        while not messages or not isinstance(messages[-1], (VideoEnd, DecodeFailed)):
            item = pool.get(timeout=30)
            assert item is not None
            if item[0] == "short":
                messages.append(item[1])
        assert isinstance(messages[-1], VideoEnd) and messages[-1].frames == 60
    finally:
        pool.close(wait=False)
