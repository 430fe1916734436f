"""Embeddings for likeness search: stored whole, scanned as small sketches.

A clip's embedding is the model's pooled features, L2-normalised, stored as float16. Ranking a
query against every video reads a **sketch** of each: the embedding projected onto
:data:`SKETCH_DIM` fixed random directions (which keeps cosine similarities close, by the
Johnson-Lindenstrauss lemma) and quantised to int8, a few hundred bytes per video. The best
:data:`RERANK` by sketch are then ranked again by their whole embeddings, so the order shown is
exact cosine similarity.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import numpy as np

SKETCH_DIM = 128
RERANK = 64
_SKETCH_SCALE = 127.0 / 0.5     # projected unit vectors rarely have a coordinate beyond +-0.5


def normalised(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, np.float32)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(norms, 1e-12)


def mean_embedding(vectors: np.ndarray, weights: Optional[Sequence[float]] = None) -> np.ndarray:
    """The (weighted) mean direction of ``vectors`` (N, D), normalised."""
    v = normalised(vectors)
    w = np.ones(len(v), np.float32) if weights is None else np.asarray(weights, np.float32)
    return normalised((v * w[:, None]).sum(0))


@functools.lru_cache(maxsize=4)
def _projection(dim: int) -> np.ndarray:
    rng = np.random.default_rng(dim)          # fixed: every sketch of a dimension uses the same
    q, _ = np.linalg.qr(rng.standard_normal((dim, min(dim, SKETCH_DIM))))
    return (q * np.sqrt(dim / q.shape[1])).astype(np.float32)   # orthonormal columns, scaled to keep norms


def sketch(vector: np.ndarray) -> bytes:
    """int8 sketch of a normalised embedding."""
    p = normalised(np.asarray(vector, np.float32) @ _projection(len(vector)))
    return np.clip(np.round(p * _SKETCH_SCALE), -127, 127).astype(np.int8).tobytes()


def to_blob(vector: np.ndarray) -> bytes:
    return normalised(vector).astype(np.float16).tobytes()


def from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, np.float16).astype(np.float32)


def rank_sketches(query: np.ndarray, ids: np.ndarray, sketches: np.ndarray, keep: int = RERANK) -> np.ndarray:
    """The ``keep`` ids whose int8 sketches (N, SKETCH_DIM) are most similar to ``query``."""
    if len(ids) == 0:
        return ids
    q = normalised(np.asarray(query, np.float32) @ _projection(len(query)))
    scores = sketches.astype(np.float32) @ q
    keep = min(keep, len(ids))
    best = np.argpartition(-scores, keep - 1)[:keep]
    return ids[best[np.argsort(-scores[best])]]
