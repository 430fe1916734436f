"""``realtime index``: classify every video of a gallery folder into the gallery database.

For each video: its facts (duration, fps, size, resolution), every window at ``stride`` through
the whole file as ``realtime classify --timeline`` reads it, the top-k labels (probabilities
averaged over the windows), and **segments**: runs of one stable label, found by the same
smoothing the live path uses, each with a JPEG thumbnail of its most confident moment and an
embedding (the model's pooled features of the window there). The clip's embedding is their
duration-weighted mean (of two windows spread over it when it has no segment).

Incremental: a video whose path, size, modification time and model are as stored is not read
again; a changed one is done again; ``prune`` removes the rows of files that are gone. Each video
is committed on its own, so Ctrl-C loses at most the video in flight. A file that cannot be read
is stored as failed, with the reason, and the run goes on.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from realtime.config import Config
from realtime.core.errors import ModelError, RealtimeError
from realtime.core.smoothing import LabelSmoother, SmoothingParams
from realtime.gallery.scan import gallery_videos
from realtime.gallery.store import GalleryStore, Segment, VideoFacts, VideoRecord
from realtime.gallery.vectors import mean_embedding, sketch, to_blob
from realtime.models import ClipClassifier, classifier_for
from realtime.models.base import Embedding
from realtime.stream.pipeline import smoothing_params
from realtime.tools.classify import ClipResult, classify_file
from realtime.tools.clip_windows import read_windows

logger = logging.getLogger(__name__)

THUMB_WIDTH = 160


@dataclass
class IndexSummary:
    found: int = 0
    indexed: int = 0
    unchanged: int = 0
    failed: int = 0
    pruned: int = 0
    seconds: float = 0.0
    video_seconds: float = 0.0          # duration of the videos indexed in this run
    interrupted: bool = False
    failures: list[tuple[str, str]] = field(default_factory=list)

    def line(self) -> str:
        rate = self.video_seconds / self.seconds if self.seconds > 0 else 0.0
        text = (f"{self.found} videos: {self.indexed} indexed, {self.unchanged} unchanged, {self.failed} failed"
                f"{f', {self.pruned} pruned' if self.pruned else ''} in {self.seconds:.1f} s"
                f" ({rate:.1f} video-seconds per second)")
        return text + (" - interrupted; the next run continues" if self.interrupted else "")


def video_facts(path: str) -> VideoFacts:
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            return VideoFacts(None, None, None, None, None)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) or None
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) or None
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0) or None
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0) or None
    finally:
        cap.release()
    duration = frames / fps if frames and fps else None
    return VideoFacts(duration, fps, width, height, frames)


def find_segments(result: ClipResult, params: SmoothingParams) -> list[tuple[Segment, float]]:
    """Runs of one stable label over ``result``'s windows (the live path's smoothing, fed the
    file's own timestamps), each with the time of its most confident window; uncertain runs are
    left out. The smoother switches only after ``min_dwell_seconds``; a run starts back where the
    windows before the switch already had its label on top. Returns (segment, thumbnail time)."""
    assert result.window_probs is not None
    probs_all = result.window_probs
    smoother = LabelSmoother(result.labels, params)
    index = {name: i for i, name in enumerate(result.labels)}
    runs: list[dict] = []
    for i, (window, probs) in enumerate(zip(result.windows, probs_all)):
        start = window.media_start or 0.0
        end = window.media_end or start
        s = smoother.update(probs, end)
        if s.change is not None or not runs:
            first = i
            label_index = index.get(s.label)
            floor = runs[-1]["first"] + 1 if runs else 0
            while label_index is not None and first > floor and int(np.argmax(probs_all[first - 1])) == label_index:
                first -= 1
            begin = result.windows[first].media_start or 0.0
            if runs:
                runs[-1]["end"] = min(runs[-1]["end"], begin)
            runs.append({"label": s.label, "first": first, "start": begin, "end": end, "scores": [],
                         "best": -1.0, "best_t": (start + end) / 2, "uncertain": s.uncertain})
        run = runs[-1]
        run["end"] = end
        run["scores"].append(s.score)
        raw = float(probs[index[s.label]]) if s.label in index else s.score
        if raw > run["best"]:
            run["best"], run["best_t"] = raw, (start + end) / 2
    return [(Segment(round(r["start"], 3), round(r["end"], 3), r["label"], float(np.mean(r["scores"]))), r["best_t"])
            for r in runs if not r["uncertain"]]


def thumbnail(path: str, seconds: float, width: int = THUMB_WIDTH) -> Optional[bytes]:
    """A JPEG of the frame at ``seconds`` into the video, ``width`` pixels wide (None if unreadable)."""
    cap = cv2.VideoCapture(path)
    try:
        cap.set(cv2.CAP_PROP_POS_MSEC, max(0.0, seconds) * 1000.0)
        ok, frame = cap.read()
    finally:
        cap.release()
    if not ok or frame is None:
        return None
    h, w = frame.shape[:2]
    small = cv2.resize(frame, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return data.tobytes() if ok else None


def index_video(path: str, size: int, mtime_ns: int, config: Config, classifier: ClipClassifier,
                stride: float, top_k: int, model_name: Optional[str] = None) -> VideoRecord:
    """Everything stored about one video; a file that cannot be read gives a failed record."""
    facts = video_facts(path)
    model = model_name or classifier.name
    try:
        result = classify_file(path, config, classifier=classifier, stride=stride, progress=False,
                               keep_probs=True)
    except ModelError:
        raise                             # the model, not this file: stop the run
    except RealtimeError as exc:
        return VideoRecord(path, size, mtime_ns, model, status="failed", error=str(exc), facts=facts)
    labels = [(t["label"], t["score"]) for t in result.top_k(top_k)]
    found = find_segments(result, smoothing_params(config.smoothing))
    embedding, clip_vector, segment_vectors = None, None, [None] * len(found)
    if isinstance(classifier, Embedding):
        centres = [t for _, t in found] or [w.media_end or 0.0 for w in result.windows[:: max(1, len(result.windows) // 2)]][:2]
        try:
            vectors = classifier.embed(read_windows(path, classifier.input_spec, classifier.num_frames,
                                                    classifier.window_seconds, len(centres), centres=centres))
        except (RealtimeError, ValueError, OSError) as exc:
            logger.warning("no embedding for %s: %s", path, exc)
        else:
            weights = [seg.end - seg.start for seg, _ in found] or None
            clip_vector = mean_embedding(vectors, weights)
            embedding = to_blob(clip_vector)
            if found:
                segment_vectors = [to_blob(v) for v in vectors]
    segments = [Segment(seg.start, seg.end, seg.label, seg.score, round(best_t, 3), thumbnail(path, best_t), vec)
                for (seg, best_t), vec in zip(found, segment_vectors)]
    return VideoRecord(path, size, mtime_ns, model, facts=facts, windows=len(result.windows),
                       labels=labels, segments=segments, embedding=embedding,
                       sketch=sketch(clip_vector) if clip_vector is not None else None)


def embed_video(path: str, classifier: ClipClassifier, windows: int = 4) -> np.ndarray:
    """A video's embedding without indexing it: the mean of ``windows`` windows spread over it."""
    if not isinstance(classifier, Embedding):
        raise ModelError(f"{classifier.name} gives no embeddings")
    classifier.load()
    clips = read_windows(path, classifier.input_spec, classifier.num_frames, classifier.window_seconds, windows)
    return mean_embedding(classifier.embed(clips))


def index_gallery(root: str, store: GalleryStore, config: Config, *, stride: float = 1.0, top_k: int = 5,
                  prune: bool = False, progress: bool = True,
                  classifier: Optional[ClipClassifier] = None) -> IndexSummary:
    """Index the videos under ``root`` into ``store``; see the module."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    started = time.monotonic()
    summary = IndexSummary()
    videos = list(gallery_videos(root))
    summary.found = len(videos)
    # The model's name is its identity in the database; torch loads only when there is work.
    model_name = classifier.name if classifier is not None else config.model.name
    todo = []
    for path in videos:
        st = path.stat()
        if store.unchanged(str(path), st.st_size, st.st_mtime_ns, model_name):
            summary.unchanged += 1
        else:
            todo.append((path, st.st_size, st.st_mtime_ns))
    if prune:
        present = {str(p) for p in videos}
        root_abs = str(Path(root).expanduser().absolute())
        gone = [p for p in store.paths() if p not in present and (p + os.sep).startswith(root_abs + os.sep)]
        summary.pruned = store.remove(gone)
    clf = classifier
    if todo:
        clf = classifier if classifier is not None else classifier_for(config.model)
        clf.load()
    bar = tqdm(total=len(todo), unit="video", desc="indexing", file=sys.stderr, dynamic_ncols=True,
               disable=None if progress else True)
    try:
        with logging_redirect_tqdm():
            for path, size, mtime_ns in todo:
                assert clf is not None
                record = index_video(str(path), size, mtime_ns, config, clf, stride, top_k, model_name)
                store.put(record)
                if record.status == "ok":
                    summary.indexed += 1
                    summary.video_seconds += (record.facts.duration or 0.0) if record.facts else 0.0
                else:
                    summary.failed += 1
                    summary.failures.append((record.path, record.error or ""))
                    logger.warning("cannot index %s: %s", record.path, record.error)
                bar.update(1)
                elapsed = max(1e-9, time.monotonic() - started)
                bar.set_postfix_str(f"{summary.indexed / elapsed:.2f} videos/s, "
                                    f"{summary.video_seconds / elapsed:.1f} video-s/s", refresh=False)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
    summary.seconds = time.monotonic() - started
    return summary


__all__: Sequence[str] = ["IndexSummary", "embed_video", "find_segments", "index_gallery", "index_video", "thumbnail",
                          "video_facts"]
