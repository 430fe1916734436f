"""Does the accessibility preset announce every activity, in order, on time, with its end?

    .venv/bin/python scripts/bench_announcements.py [--clips ../shared/clips] [--runs 5] [--json OUT]
        [--set KEY=VALUE]...

The four reference clips are joined into one video, which is read paced in real time (as a
camera would deliver it) by `realtime run --config accessibility` with the speech sink saving
WAV files instead of speaking. For each run: every activity's start announcement ("started" or
"urgent") with its delay after the clip's start, whether the activities came in order, and
whether each one's end was announced ("ended", or the start of the next one said together with
the end of this one). Pass: all of that, each start within --max-delay seconds (5).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from realtime.config import parse_value  # noqa: E402
from support.announcements import ACTIVITIES, one_run  # noqa: E402
from support.joined import join_clips  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", default=str(REPO.parent / "shared" / "clips"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--max-delay", type=float, default=5.0)
    ap.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args()
    settings = {k: parse_value(v) for k, _, v in (s.partition("=") for s in args.settings)}
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "four.mp4"
        segments = join_clips([Path(args.clips) / name for name, _ in ACTIVITIES], video)
        results = []
        for i in range(args.runs):
            result = one_run(video, segments, settings, args.max_delay)
            results.append(result)
            print(json.dumps({"run": i + 1, "pass": result["pass"], "in_order": result["in_order"],
                              "activities": result["activities"]}), flush=True)
    print(f"{sum(r['pass'] for r in results)} of {len(results)} runs pass", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0 if all(r["pass"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
