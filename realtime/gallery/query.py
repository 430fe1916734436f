"""``realtime search`` and ``realtime tags``: the gallery database read back by activity words.

A query is words as people type them. It matches a model label when every query word is the
start of one of the label's words (``guitar`` -> ``playing guitar``; ``pan`` -> ``flipping
pancake``), after lower-casing, dropping punctuation and reducing words on both sides to a rough
stem (a plural ``s``, ``-ing``, ``-ed``, a final ``e``: ``push ups`` -> ``push up``, ``wrestle``
-> ``arm wrestling``, ``climb`` -> ``rock climbing``), or when the query without spaces is
inside the label without spaces (``pushup``). Videos rank by their best matching evidence: a matched label's probability
averaged over the whole video, or a matched segment's smoothed score, whichever is higher.
"""

from __future__ import annotations

import re
from typing import Any, Optional, Sequence

import numpy as np

from realtime.core.errors import ConfigError
from realtime.gallery.store import GalleryStore
from realtime.gallery.vectors import RERANK, from_blob, normalised, rank_sketches

DEFAULT_TOP = 10
LABEL_DEPTH = 5
"""How far down a video's top labels a query may match (the stored top-k)."""


def _word(w: str) -> str:
    """A rough stem, the same for the query's words and the labels': enough for prefix matching."""
    if len(w) > 2 and w.endswith("s") and not w.endswith("ss"):
        w = w[:-1]
    for suffix in ("ing", "ed"):
        if len(w) > len(suffix) + 2 and w.endswith(suffix):
            w = w[:-len(suffix)]
            break
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    return w


def words(text: str) -> list[str]:
    return [_word(w) for w in re.findall(r"[a-z0-9]+", text.lower())]


def label_matches(query: str, label: str) -> bool:
    q, lw = words(query), words(label)
    if not q:
        return False
    if all(any(w.startswith(part) for w in lw) for part in q):
        return True
    return len("".join(q)) >= 4 and "".join(q) in "".join(lw)


def matching_labels(query: str, labels: Sequence[str]) -> list[str]:
    return sorted({label for label in labels if label_matches(query, label)})


def search(store: GalleryStore, query: str, top: int = DEFAULT_TOP) -> dict[str, Any]:
    """The JSON document ``realtime search --json`` prints (see README): the labels the query
    matched, and the videos best first, each with its matching segments in time order."""
    labels = matching_labels(query, store.labels())
    ranked = store.rank(labels, LABEL_DEPTH, top)
    segments = store.segments_of([vid for vid, _, _, _ in ranked], labels)
    results = [{"path": path, "score": round(score, 6), "label": label,
                "segments": [{"start": seg.start, "end": seg.end, "label": seg.label, "score": round(seg.score, 6)}
                             for seg in segments.get(vid, [])]}
               for vid, path, score, label in ranked]
    return {"query": query, "labels": labels, "results": results}


def like(store: GalleryStore, vector: np.ndarray, top: int = DEFAULT_TOP, exclude: Optional[str] = None,
         like_path: Optional[str] = None) -> dict[str, Any]:
    """``realtime search --like VIDEO``: videos ranked by the cosine similarity of their embedding
    to ``vector`` (best first; ``exclude``: the query video itself), each with its segments scored
    by their own similarity to it. Sketches narrow the field, whole embeddings rank it
    (:mod:`realtime.gallery.vectors`)."""
    query = normalised(vector)
    ids, blob = store.sketches()
    results: list[dict[str, Any]] = []
    if ids:
        sketches = np.frombuffer(blob, np.int8).reshape(len(ids), -1)
        picked = rank_sketches(query, np.asarray(ids), sketches, keep=RERANK + 1)
        scored = []
        for vid, path, emb, label in store.candidates([int(i) for i in picked]):
            stored = from_blob(emb)
            if len(stored) != len(query):
                raise ConfigError(f"the gallery was indexed with another model ({len(stored)}-dimensional "
                                  f"embeddings, the query has {len(query)}); use --model as for index")
            if path != exclude:
                scored.append((float(stored @ query), vid, path, label))
        scored.sort(key=lambda x: (-x[0], x[2]))
        scored = scored[:max(0, top)]
        segments = store.segment_embeddings([vid for _, vid, _, _ in scored])
        for score, vid, path, label in scored:
            segs = [{"start": seg.start, "end": seg.end, "label": seg.label,
                     "score": round(float(from_blob(emb) @ query), 6) if emb is not None else None}
                    for seg, emb in segments.get(vid, [])]
            results.append({"path": path, "score": round(score, 6), "label": label or "", "segments": segs})
    return {"query": None, "like": like_path, "labels": [], "results": results}


def tags(store: GalleryStore) -> dict[str, Any]:
    """``realtime tags --json``: every segment label with its number of videos and seconds."""
    return {"tags": [{"label": label, "videos": n, "seconds": seconds} for label, n, seconds in store.tags()]}


def clock(seconds: float) -> str:
    """``1:05`` (or ``1:02:03``) for a time in seconds."""
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def format_search(doc: dict[str, Any]) -> str:
    if doc.get("like"):
        lines = [f"videos like {doc['like']}:"] + ([] if doc["results"] else ["none indexed with embeddings"])
        for i, r in enumerate(doc["results"], 1):
            lines.append(f"{i:>3}. {r['path']}  similarity {r['score']:.2f} ({r['label']})")
        return "\n".join(lines)
    if not doc["labels"]:
        return f"no label matches {doc['query']!r} (realtime tags lists the labels found)"
    lines = [f"{doc['query']!r} matches: {', '.join(doc['labels'])}"]
    if not doc["results"]:
        lines.append("no video has them")
    for i, r in enumerate(doc["results"], 1):
        lines.append(f"{i:>3}. {r['path']}  {r['label']} {r['score']:.2f}")
        for seg in r["segments"]:
            lines.append(f"       {clock(seg['start'])}-{clock(seg['end'])}  {seg['label']} {seg['score']:.2f}")
    return "\n".join(lines)


def format_tags(doc: dict[str, Any]) -> str:
    if not doc["tags"]:
        return "no labels yet: run realtime index GALLERY"
    return "\n".join(f"{t['label']:<40} {t['videos']:>6} videos {t['seconds']:>10.1f} s" for t in doc["tags"])
