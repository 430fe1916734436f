"""``realtime index``: classify every video of a gallery folder into the gallery database.

For each video: its facts (duration, fps, size, resolution), every window at ``stride`` through
the whole file as ``realtime classify --timeline`` takes them, the top-k labels (probabilities
averaged over the windows), and **segments**: runs of one stable label, found by the same
smoothing the live path uses, each with a JPEG thumbnail of its most confident moment and an
embedding (the mean of its windows' pooled features). The clip's embedding is the segments'
duration-weighted mean (every window's mean when it has no segment).

Decoding runs in worker processes (:class:`~realtime.gallery.workers.DecodePool`) while the model
takes windows from any of the videos in flight, a batch at a time, and gives each window's
probabilities and pooled features from one pass (``predict_embed``): nothing is decoded twice.

Incremental: a video whose path, size, modification time and model are as stored is not read
again; a changed one is done again; ``prune`` removes the rows of files that are gone. Each video
is committed on its own as soon as its last window is through, so Ctrl-C loses at most the videos
in flight. A file that cannot be read is stored as failed, with the reason, and the run goes on.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from realtime.config import Config
from realtime.core.errors import ModelError
from realtime.core.smoothing import LabelSmoother, SmoothingParams
from realtime.gallery.decode import DecodePlan, VideoEnd, WindowChunk
from realtime.gallery.scan import gallery_videos
from realtime.gallery.store import GalleryStore, Segment, VideoFacts, VideoRecord
from realtime.gallery.vectors import mean_embedding, sketch, to_blob
from realtime.gallery.workers import DecodeFailed, DecodePool
from realtime.models import ClipClassifier, classifier_for
from realtime.models.base import Embedding
from realtime.stream.inference import top_k as best_k
from realtime.stream.pipeline import smoothing_params
from realtime.tools.clip_windows import read_windows

logger = logging.getLogger(__name__)


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
    model_seconds: float = 0.0          # in the model's passes
    failures: list[tuple[str, str]] = field(default_factory=list)

    def line(self) -> str:
        rate = self.video_seconds / self.seconds if self.seconds > 0 else 0.0
        text = (f"{self.found} videos: {self.indexed} indexed, {self.unchanged} unchanged, {self.failed} failed"
                f"{f', {self.pruned} pruned' if self.pruned else ''} in {self.seconds:.1f} s"
                f" ({rate:.1f} video-seconds per second)")
        return text + (" - interrupted; the next run continues" if self.interrupted else "")


@dataclass
class _Video:
    """One video in flight: its decoded windows' times, thumbnails, probabilities and features."""

    path: str
    size: int
    mtime_ns: int
    facts: Optional[VideoFacts] = None
    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    thumbs: list[Optional[bytes]] = field(default_factory=list)
    probs: list[np.ndarray] = field(default_factory=list)
    features: list[np.ndarray] = field(default_factory=list)
    waiting: int = 0                 # windows decoded, not yet through the model
    end: Optional[VideoEnd] = None
    failed: Optional[str] = None


@dataclass(frozen=True)
class SegmentRun:
    segment: Segment
    best: int                        # the window where the label is most confident
    first: int                       # the run's windows: first..last
    last: int


def find_segments(labels: Sequence[str], starts: Sequence[float], ends: Sequence[float], probs: np.ndarray,
                  params: SmoothingParams) -> list[SegmentRun]:
    """Runs of one stable label over a video's windows (the live path's smoothing, fed the
    file's own timestamps), each with its most confident window; uncertain runs are left out.
    The smoother switches only after ``min_dwell_seconds``; a run starts back where the windows
    before the switch already had its label on top."""
    smoother = LabelSmoother(labels, params)
    index = {name: i for i, name in enumerate(labels)}
    runs: list[dict] = []
    for i, (start, end, p) in enumerate(zip(starts, ends, probs)):
        s = smoother.update(p, end)
        if s.change is not None or not runs:
            first = i
            label_index = index.get(s.label)
            floor = runs[-1]["first"] + 1 if runs else 0
            while label_index is not None and first > floor and int(np.argmax(probs[first - 1])) == label_index:
                first -= 1
            if runs:
                runs[-1]["end"] = min(runs[-1]["end"], starts[first])
                runs[-1]["last"] = first - 1
            runs.append({"label": s.label, "first": first, "last": i, "start": starts[first], "end": end,
                         "scores": [], "best": -1.0, "best_i": i, "uncertain": s.uncertain})
        run = runs[-1]
        run["end"], run["last"] = end, i
        run["scores"].append(s.score)
        raw = float(p[index[s.label]]) if s.label in index else s.score
        if raw > run["best"]:
            run["best"], run["best_i"] = raw, i
    return [SegmentRun(Segment(round(r["start"], 3), round(r["end"], 3), r["label"], float(np.mean(r["scores"]))),
                       r["best_i"], r["first"], max(r["first"], r["last"]))
            for r in runs if not r["uncertain"]]


def video_record(video: _Video, labels: Sequence[str], model: str, config: Config, top_k: int) -> VideoRecord:
    """What is stored about a video whose windows have all been classified."""
    if video.failed is not None or not video.probs:
        reason = video.failed or f"no window could be classified in {video.path}"
        return VideoRecord(video.path, video.size, video.mtime_ns, model, status="failed", error=reason,
                           facts=video.facts)
    probs = np.stack(video.probs)
    top = [(s.label, round(s.score, 6)) for s in best_k(probs.mean(axis=0), labels, top_k)]
    runs = find_segments(labels, video.starts, video.ends, probs, smoothing_params(config.smoothing))
    clip_vector, vectors = None, [None] * len(runs)
    if video.features and all(f is not None for f in video.features):
        features = np.stack(video.features)
        # A segment's embedding: the mean of its windows' pooled features; the clip's: the
        # segments' weighted by duration, or every window's when there is no segment.
        seg_vectors = [mean_embedding(features[r.first:r.last + 1]) for r in runs]
        clip_vector = (mean_embedding(np.stack(seg_vectors), [r.segment.end - r.segment.start for r in runs])
                       if runs else mean_embedding(features))
        vectors = [to_blob(v) for v in seg_vectors]
    segments = [Segment(r.segment.start, r.segment.end, r.segment.label, r.segment.score,
                        round((video.starts[r.best] + video.ends[r.best]) / 2, 3), video.thumbs[r.best], vec)
                for r, vec in zip(runs, vectors)]
    return VideoRecord(video.path, video.size, video.mtime_ns, model, facts=video.facts, windows=len(video.probs),
                       labels=top, segments=segments,
                       embedding=to_blob(clip_vector) if clip_vector is not None else None,
                       sketch=sketch(clip_vector) if clip_vector is not None else None)


class _Batcher:
    """Windows from any of the videos in flight, through the model ``max_batch`` at a time."""

    def __init__(self, classifier: ClipClassifier, max_batch: int) -> None:
        self.classifier = classifier
        self.max_batch = max(1, int(max_batch))
        self.embeds = isinstance(classifier, Embedding)
        self.ready: list[tuple[_Video, int, np.ndarray]] = []    # (video, window index, clip)
        self.model_seconds = 0.0

    def add(self, video: _Video, chunk: WindowChunk) -> None:
        base = len(video.starts)
        video.starts += chunk.starts
        video.ends += chunk.ends
        video.thumbs += chunk.thumbs
        video.probs += [None] * len(chunk.starts)      # type: ignore[list-item]
        video.features += [None] * len(chunk.starts)   # type: ignore[list-item]
        video.waiting += len(chunk.starts)
        self.ready += [(video, base + k, chunk.clips[k]) for k in range(len(chunk.starts))]

    def run(self) -> None:
        """One batch through the model."""
        batch, self.ready = self.ready[: self.max_batch], self.ready[self.max_batch:]
        clips = np.stack([clip for _, _, clip in batch])
        started = time.monotonic()
        if self.embeds:
            probs, features = self.classifier.predict_embed(clips)   # type: ignore[attr-defined]
        else:
            probs, features = self.classifier.predict(clips), [None] * len(batch)
        self.model_seconds += time.monotonic() - started
        for (video, k, _), p, f in zip(batch, probs, features):
            video.probs[k], video.features[k] = p, f
            video.waiting -= 1


def embed_video(path: str, classifier: ClipClassifier, windows: int = 4) -> np.ndarray:
    """A video's embedding without indexing it: the mean of ``windows`` windows spread over it."""
    if not isinstance(classifier, Embedding):
        raise ModelError(f"{classifier.name} gives no embeddings")
    classifier.load()
    clips = read_windows(path, classifier.input_spec, classifier.num_frames, classifier.window_seconds, windows)
    return mean_embedding(classifier.embed(clips))


@dataclass(frozen=True)
class IndexSettings:
    """How videos are indexed, the same in every engine (picklable, for Ray)."""

    stride: float = 1.0
    top_k: int = 5
    model_name: str = ""
    workers: int = 1                 # decode processes (0: a thread)
    max_batch: Optional[int] = None  # windows per pass of the model (None: 1 on a CPU, 8 on a GPU)


def index_videos(todo: Sequence[tuple[str, int, int]], classifier: ClipClassifier, config: Config,
                 settings: IndexSettings, on_record: Callable[[VideoRecord], None]) -> float:
    """The engine on one machine: decode ``todo``'s (path, size, mtime_ns) in the decode pool,
    classify their windows in batches with ``classifier`` (loaded here if need be), and call
    ``on_record`` with each video's record as soon as it is complete. Returns the seconds spent in
    the model's passes."""
    classifier.load()
    labels = list(classifier.labels)
    plan = DecodePlan(classifier.input_spec, classifier.num_frames, classifier.window_seconds, settings.stride)
    batch = settings.max_batch or (8 if str(getattr(classifier, "device", "cpu")).startswith("cuda") else 1)
    batcher = _Batcher(classifier, batch)
    limit = batcher.max_batch + plan.chunk
    in_flight = {key: _Video(path, size, mtime_ns) for key, (path, size, mtime_ns) in enumerate(todo)}
    pool = DecodePool(plan, workers=settings.workers)
    clean = False
    try:
        for key, video in in_flight.items():
            pool.submit(key, video.path)
        while in_flight:
            # Take decoded windows while few wait for the model (the workers wait meanwhile:
            # bounded memory), and wait for them only when the model has nothing to do.
            got = pool.get(timeout=0.0 if batcher.ready else 0.5) if len(batcher.ready) < limit else None
            if got is not None:
                key, message = got
                video = in_flight[key]
                if isinstance(message, WindowChunk):
                    batcher.add(video, message)
                elif isinstance(message, VideoEnd):
                    video.end = message
                    if message.note:
                        logger.warning("%s", message.note)
                elif isinstance(message, DecodeFailed):
                    video.failed = message.reason
                else:
                    video.facts = message
            if batcher.ready and (got is None or len(batcher.ready) >= batcher.max_batch):
                batcher.run()
            for key in [k for k, v in in_flight.items() if (v.end or v.failed) and not v.waiting]:
                on_record(video_record(in_flight.pop(key), labels, settings.model_name, config, settings.top_k))
        clean = True
    finally:
        pool.close(wait=clean)
    return batcher.model_seconds


def index_gallery(root: str, store: GalleryStore, config: Config, *, stride: float = 1.0, top_k: int = 5,
                  prune: bool = False, progress: bool = True, classifier: Optional[ClipClassifier] = None,
                  workers: int = 1, max_batch: Optional[int] = None, ray: Optional[str] = None) -> IndexSummary:
    """Index the videos under ``root`` into ``store``; see the module. ``workers``: decode
    processes (0: a thread of this process); ``max_batch``: windows per pass of the model;
    ``ray``: run on a Ray cluster instead ("" starts a local one, else its address)."""
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
            todo.append((str(path), st.st_size, st.st_mtime_ns))
    if prune:
        present = {str(p) for p in videos}
        root_abs = str(Path(root).expanduser().absolute())
        gone = [p for p in store.paths() if p not in present and (p + os.sep).startswith(root_abs + os.sep)]
        summary.pruned = store.remove(gone)
    if not todo:
        summary.seconds = time.monotonic() - started
        return summary
    settings = IndexSettings(stride, top_k, model_name, workers, max_batch)
    bar = tqdm(total=len(todo), unit="video", desc="indexing", file=sys.stderr, dynamic_ncols=True,
               disable=None if progress else True)

    def commit(record: VideoRecord) -> None:
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

    try:
        with logging_redirect_tqdm():
            if ray is not None:
                from realtime.gallery.ray_index import index_on_ray
                index_on_ray(todo, config, settings, commit, address=ray or None)
            else:
                clf = classifier if classifier is not None else classifier_for(config.model)
                summary.model_seconds = index_videos(todo, clf, config, settings, commit)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
    summary.seconds = time.monotonic() - started
    return summary


__all__: Sequence[str] = ["IndexSettings", "IndexSummary", "SegmentRun", "embed_video", "find_segments",
                          "index_gallery", "index_videos", "video_record"]
