"""Index throughput against the model alone, side by side in one run.

    .venv/bin/python scripts/bench_index.py GALLERY [--workers 0,1,2] [--batch 1,4] [--engine auto]
        [--repeat 2] [--json OUT]

For each (workers, batch) setting, ``index_gallery`` indexes GALLERY into a fresh database
(the model loaded once, outside the timing). The model alone: the same windows, decoded
beforehand, through ``predict_embed`` at the same batch size. Reported: seconds, video-seconds
per second, and the ratio to the model alone (1.00 = decoding completely hidden).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from realtime.config import load_config  # noqa: E402
from realtime.gallery.decode import DecodePlan, WindowChunk, decode_video  # noqa: E402
from realtime.gallery.index import index_gallery  # noqa: E402
from realtime.gallery.scan import gallery_videos  # noqa: E402
from realtime.gallery.store import GalleryStore  # noqa: E402
from realtime.models import classifier_for  # noqa: E402


def model_alone(classifier, windows: np.ndarray, batch: int) -> float:
    started = time.monotonic()
    for i in range(0, len(windows), batch):
        classifier.predict_embed(windows[i:i + batch])
    return time.monotonic() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gallery")
    ap.add_argument("--workers", default="0,1,2")
    ap.add_argument("--batch", default="1,4")
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--model", default="i3d-kinetics400")
    ap.add_argument("--stride", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args()

    config = load_config(overrides=[f"model.name={args.model}", f"model.engine={args.engine}"])
    classifier = classifier_for(config.model)
    classifier.load()
    plan = DecodePlan(classifier.input_spec, classifier.num_frames, classifier.window_seconds, args.stride)
    chunks = [m.clips for path in gallery_videos(args.gallery) for m in decode_video(str(path), plan)
              if isinstance(m, WindowChunk)]
    windows = np.concatenate(chunks)
    batches = [int(b) for b in args.batch.split(",")]
    model_alone(classifier, windows[:2], 1)          # warm the pooled-features model up
    rows = []
    for _ in range(args.repeat):                      # interleaved, so drift hits every row alike
        for batch in batches:
            alone = model_alone(classifier, windows, batch)
            for workers in (int(w) for w in args.workers.split(",")):
                with tempfile.TemporaryDirectory() as tmp, GalleryStore(Path(tmp) / "g.db") as store:
                    s = index_gallery(args.gallery, store, config, stride=args.stride, progress=False,
                                      classifier=classifier, workers=workers, max_batch=batch)
                rows.append({"workers": workers, "batch": batch, "seconds": round(s.seconds, 3),
                             "model_alone": round(alone, 3), "ratio": round(s.seconds / alone, 3),
                             "video_s_per_s": round(s.video_seconds / s.seconds, 2), "windows": len(windows),
                             "videos": s.indexed})
                print(json.dumps(rows[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"engine": classifier.engine, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
