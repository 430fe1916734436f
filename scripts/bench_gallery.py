"""Search speed on a big gallery database: fill one with synthetic videos, time the queries.

    .venv/bin/python scripts/bench_gallery.py --videos 100000 --db /tmp/big.db [--json OUT]

Each synthetic video gets 5 top labels and 1-4 segments drawn from the Kinetics-400 labels (a
few labels much more common than others, as in real galleries), a JPEG thumbnail per segment of
a typical size (about 4 KB, a 160x90 frame), and 1024-dimensional embeddings (the I3D's size; a
direction per label plus noise) per clip and per segment. Reported: the database size per video
and the p50/p99 of `realtime search`'s label query for several words and of `--like` (fresh
connection each time, as the command opens it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from realtime.gallery.query import like, search  # noqa: E402
from realtime.gallery.vectors import normalised, sketch, to_blob  # noqa: E402
from realtime.gallery.store import GalleryStore, Segment, VideoRecord  # noqa: E402
from realtime.models.i3d import kinetics400_labels  # noqa: E402

QUERIES = ["guitar", "push ups", "pancake", "basketball", "arm wrestle", "dancing", "swim", "xyz"]


def fill(store: GalleryStore, count: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    labels = list(kinetics400_labels())
    weights = 1.0 / np.arange(1, len(labels) + 1) ** 0.8        # Zipf-like: some labels common
    weights /= weights.sum()
    thumb = bytes(rng.integers(0, 256, 4000, dtype=np.uint8))
    directions = normalised(rng.standard_normal((len(labels), 1024)))
    started = time.monotonic()
    for i in range(count):
        picks = rng.choice(len(labels), size=5, replace=False, p=weights)
        scores = np.sort(rng.dirichlet(np.ones(5) * 0.7))[::-1]
        duration = float(rng.uniform(5, 300))
        segments, t = [], 0.0
        for _ in range(int(rng.integers(1, 5))):
            end = min(duration, t + float(rng.uniform(3, 60)))
            k = int(rng.choice(picks[:3]))
            vec = normalised(directions[k] + 0.8 * normalised(rng.standard_normal(1024)))
            segments.append(Segment(round(t, 3), round(end, 3), labels[k], float(rng.uniform(0.4, 0.99)),
                                    (t + end) / 2, thumb, to_blob(vec)))
            t = end
            if t >= duration:
                break
        clip = normalised(np.mean([np.frombuffer(s.embedding, np.float16).astype(np.float32) for s in segments], 0))
        store.put(VideoRecord(f"/gallery/{i // 1000:03d}/VID_{i:07d}.mp4", 1_000_000 + i, i, "i3d-kinetics400",
                              labels=[(labels[int(j)], float(s)) for j, s in zip(picks, scores)],
                              segments=segments, embedding=to_blob(clip), sketch=sketch(clip)))
        if (i + 1) % 10000 == 0:
            print(f"  {i + 1} videos ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=100_000)
    ap.add_argument("--db", required=True)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args()
    db = Path(args.db)
    if not db.exists():
        with GalleryStore(db) as store:
            fill(store, args.videos)
    size = db.stat().st_size
    times: dict[str, list[float]] = {q: [] for q in QUERIES}
    hits: dict[str, int] = {}
    for _ in range(args.repeats):
        for q in QUERIES:
            started = time.perf_counter()
            with GalleryStore(db) as store:
                doc = search(store, q)
            times[q].append((time.perf_counter() - started) * 1000)
            hits[q] = len(doc["results"])
    rng = np.random.default_rng(1)
    like_ms = []
    for _ in range(args.repeats):
        query = normalised(rng.standard_normal(1024))
        started = time.perf_counter()
        with GalleryStore(db) as store:
            like(store, query)
        like_ms.append((time.perf_counter() - started) * 1000)
    result = {"videos": args.videos, "db_bytes": size, "bytes_per_video": round(size / args.videos),
              "like": {"p50_ms": round(float(np.median(like_ms)), 2), "p99_ms": round(float(np.percentile(like_ms, 99)), 2)},
              "queries": {q: {"p50_ms": round(float(np.median(v)), 2), "p99_ms": round(float(np.percentile(v, 99)), 2),
                              "results": hits[q]} for q, v in times.items()}}
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
