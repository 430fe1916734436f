"""``realtime eval`` and ``realtime finetune`` read a class-per-folder data set the same way:
the same video extensions, the same hidden names skipped."""

from __future__ import annotations

from pathlib import Path

from realtime.tools.clipfolders import VIDEO_EXTENSIONS, scan_class_folders
from realtime.tools.evaluate import load_dataset
from realtime.tools.finetune import scan_dataset

LAYOUT = [
    "squat/a.mp4", "squat/b.MPG", "squat/c.ts", "squat/more/d.wmv", "squat/notes.txt",
    "squat/.hidden.mp4", "lunge/e.mkv", "lunge/f.webm", "lunge/__MACOSX/g.mp4",
    "__MACOSX/squat/h.mp4", ".trash/i.mp4", "loose.mp4",
]


def make_tree(root: Path) -> None:
    for name in LAYOUT:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")          # scanning reads names only


def test_eval_and_finetune_see_the_same_clips(tmp_path: Path) -> None:
    make_tree(tmp_path)
    evaluated = {(s.path.relative_to(tmp_path).as_posix(), s.label) for s in load_dataset(tmp_path).samples}
    tuned = scan_dataset(tmp_path, probe=False)
    trained = {(c.path.relative_to(tmp_path).as_posix(), tuned.labels[c.label]) for c in tuned.clips}
    assert evaluated == trained == {
        ("squat/a.mp4", "squat"), ("squat/b.MPG", "squat"), ("squat/c.ts", "squat"),
        ("squat/more/d.wmv", "squat"), ("lunge/e.mkv", "lunge"), ("lunge/f.webm", "lunge")}


def test_scan_reports_loose_clips_and_empty_folders(tmp_path: Path) -> None:
    make_tree(tmp_path)
    (tmp_path / "empty").mkdir()
    classes, loose = scan_class_folders(tmp_path)
    assert [c.label for c in classes] == ["empty", "lunge", "squat"]
    assert classes[0].clips == () and loose == [tmp_path / "loose.mp4"]
    assert {".mpg", ".ts", ".wmv", ".mp4"} <= VIDEO_EXTENSIONS
