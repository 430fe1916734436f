"""Video search: the folder walk, the SQLite store, indexing with a real model, search and tags."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_CLIPS, TINY_LABELS, i3d_weights_or_skip, realtime, write_video
from realtime.config import load_config
from realtime.core.errors import ConfigError
from realtime.core.smoothing import SmoothingParams
from realtime.gallery.index import find_segments, index_gallery
from realtime.gallery.query import label_matches, matching_labels, search, tags
from realtime.gallery.scan import gallery_videos
from realtime.gallery.store import SCHEMA_VERSION, GalleryStore, Segment, VideoRecord


# --------------------------------------------------------------------------- the walk


def test_the_walk_finds_nested_videos_any_case_once_and_skips_hidden(tmp_path):
    g = tmp_path / "g"
    (g / "a" / "b").mkdir(parents=True)
    (g / ".hidden").mkdir()
    for name in ("one.mp4", "a/TWO.MP4", "a/b/three.Mkv", "a/notes.txt", ".secret.mp4", ".hidden/four.mp4",
                 "a/b/._five.mp4"):
        (g / name).write_bytes(b"x")
    os.symlink(g, g / "a" / "loop")                  # a link back up the tree: followed once
    os.symlink(g / "one.mp4", g / "a" / "same.mp4")  # the same file twice: indexed once
    found = [p.relative_to(g).as_posix() for p in gallery_videos(g)]
    assert sorted(found) == ["a/TWO.MP4", "a/b/three.Mkv", "one.mp4"]
    with pytest.raises(ConfigError, match="not a folder"):
        list(gallery_videos(tmp_path / "nowhere"))


# --------------------------------------------------------------------------- the store


def test_the_store_is_versioned_and_refuses_what_it_does_not_know(tmp_path):
    with GalleryStore(tmp_path / "deep" / "g.db") as store:          # its folder is made
        assert store.schema_version == SCHEMA_VERSION
    newer = tmp_path / "newer.db"
    con = sqlite3.connect(newer)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(ConfigError, match="newer than this realtime knows"):
        GalleryStore(newer)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(ConfigError, match=f"{junk}: not a gallery database"):
        GalleryStore(junk)


def test_an_older_database_is_migrated_and_keeps_its_rows(tmp_path):
    from realtime.gallery.store import MIGRATIONS
    old = tmp_path / "v1.db"
    con = sqlite3.connect(old)
    con.executescript(MIGRATIONS[0] + "PRAGMA user_version = 1;")
    con.execute("INSERT INTO videos (id, path, size, mtime_ns, model, status, indexed_at) "
                "VALUES (1, '/v/a.mp4', 1, 1, 'm', 'ok', 0)")
    con.execute("INSERT INTO video_labels VALUES (1, 0, 'playing guitar', 0.9)")
    con.execute("INSERT INTO segments (video_id, start, end, label, score) VALUES (1, 0, 4, 'strumming guitar', 0.7)")
    con.commit()
    con.close()
    with GalleryStore(old) as store:
        assert store.schema_version == SCHEMA_VERSION >= 2
        assert store.labels() == ["playing guitar", "strumming guitar"]
        doc = search(store, "guitar")
        assert [r["path"] for r in doc["results"]] == ["/v/a.mp4"] and doc["results"][0]["score"] == 0.9


def test_names_with_quotes_and_sql_are_data(tmp_path):
    evil = "/x/it's'; DROP TABLE videos; --.mp4"
    with GalleryStore(tmp_path / "g.db") as store:
        store.put(VideoRecord(evil, 1, 2, "m", labels=[("rock 'n' roll", 0.9)],
                              segments=[Segment(0.0, 3.0, "rock 'n' roll", 0.8)]))
        doc = search(store, "rock roll")
        assert doc["labels"] == ["rock 'n' roll"] and doc["results"][0]["path"] == evil
        assert store.paths() == [evil]


# --------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize("query, label, expected", [
    ("guitar", "playing guitar", True),
    ("Guitar!", "playing guitar", True),
    ("push ups", "push up", True),
    ("pushups", "push up", True),
    ("PANCAKES", "flipping pancake", True),
    ("pan", "flipping pancake", True),
    ("playing guitar", "playing guitar", True),
    ("guitar playing", "playing guitar", True),
    ("drum", "playing guitar", False),
    ("", "playing guitar", False),
    ("basketball", "shooting basketball", True),
    ("shooting", "shooting basketball", True),
    ("shoot goal", "shooting goal (soccer)", True),
    ("arm wrestle", "arm wrestling", True),
    ("climb", "rock climbing", True),
    ("dance", "tap dancing", True),
    ("juggle balls", "juggling balls", True),
    ("ski", "skiing (not slalom or crosscountry)", True),
    ("swim", "swimming backstroke", True),
    ("wrestling", "arm wrestling", True),
])
def test_queries_match_labels_as_people_type_them(query, label, expected):
    assert label_matches(query, label) is expected


def test_several_labels_can_match_one_query():
    labels = ["dribbling basketball", "playing basketball", "shooting basketball", "playing guitar"]
    assert matching_labels("basketball", labels) == labels[:3]


def test_sketches_narrow_and_whole_embeddings_rank_exactly():
    from realtime.gallery.vectors import from_blob, mean_embedding, normalised, rank_sketches, sketch, to_blob
    rng = np.random.default_rng(0)
    base = normalised(rng.standard_normal((2000, 1024)))
    query = normalised(rng.standard_normal(1024))
    near = rng.choice(2000, 10, replace=False)            # ten videos like the query, some more than others
    for i, k in enumerate(near):
        base[k] = normalised(query + (0.3 + 0.15 * i) * normalised(rng.standard_normal(1024)))
    sketches = np.frombuffer(b"".join(sketch(v) for v in base), np.int8).reshape(len(base), -1)
    picked = rank_sketches(query, np.arange(len(base)), sketches, keep=64)
    assert picked[0] == near[0]
    assert set(near) <= set(picked)                       # every look-alike survives the sketch stage
    np.testing.assert_allclose(from_blob(to_blob(base[3])), base[3], atol=1e-3)
    assert np.linalg.norm(mean_embedding(base[:5], [1, 2, 3, 4, 5])) == pytest.approx(1.0)


def _segments(probs: list[list[float]], labels: list[str], params: SmoothingParams, step: float = 1.0):
    starts = [i * step for i in range(len(probs))]
    return find_segments(labels, starts, [s + 2.0 for s in starts], np.asarray(probs, np.float32), params)


def test_segments_are_runs_of_the_stable_label_with_their_best_moment():
    labels = ["a", "b", "c"]
    probs = [[0.9, 0.05, 0.05]] * 10 + [[0.05, 0.9, 0.05]] * 8
    probs[3] = [0.99, 0.005, 0.005]                       # the most confident moment of "a"
    runs = _segments(probs, labels, SmoothingParams(min_dwell_seconds=1.0))
    assert [r.segment.label for r in runs] == ["a", "b"]
    a, b = runs
    assert a.segment.start == 0.0 and b.segment.end == 19.0
    assert 9.0 <= b.segment.start <= 11.0 and a.segment.end <= b.segment.start + 2.0
    assert a.best == 3                                    # window 3 is the most confident of "a"
    assert a.first == 0 and a.last == b.first - 1 and b.last == len(probs) - 1
    assert 0.8 < a.segment.score <= 1.0


def test_uncertain_stretches_make_no_segment():
    labels = ["a", "b", "c"]
    probs = [[0.34, 0.33, 0.33]] * 6
    assert _segments(probs, labels, SmoothingParams()) == []


# --------------------------------------------------------------------------- indexing


def _gallery(root: Path, n: int = 3) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    return [write_video(root / f"v{i}.mp4", frames=75, size=(64, 48),
                        color_of=lambda k, i=i: ((k * 7 + 80 * i) % 256, (40 * i) % 256, 200 - 30 * i))
            for i in range(n)]


def _config(model: Path):
    return load_config(overrides=[f"model.name={model}", "model.device=cpu"])


def test_index_is_incremental_records_failures_and_prunes(tiny_model, tmp_path):
    g = tmp_path / "gallery"
    videos = _gallery(g / "sub")
    (g / "broken.mp4").write_bytes(b"\x00not a video" * 50)
    db = tmp_path / "g.db"
    with GalleryStore(db) as store:
        first = index_gallery(str(g), store, _config(tiny_model), stride=0.5, progress=False)
        assert (first.found, first.indexed, first.failed, first.unchanged) == (4, 3, 1, 0)
        assert first.failures[0][0] == str((g / "broken.mp4").absolute())
        assert store.counts() == {"ok": 3, "failed": 1}

        again = index_gallery(str(g), store, _config(tiny_model), stride=0.5, progress=False)
        assert (again.indexed, again.failed, again.unchanged) == (0, 0, 4)   # nothing read again

        write_video(videos[0], frames=90, size=(64, 48))                    # changed: done again
        videos[1].unlink()                                                   # gone
        third = index_gallery(str(g), store, _config(tiny_model), stride=0.5, progress=False, prune=True)
        assert (third.indexed, third.unchanged, third.pruned) == (1, 2, 1)
        assert str(videos[1].absolute()) not in store.paths()
        labels = set(store.labels())
        assert labels and labels <= set(TINY_LABELS)
        row = sqlite3.connect(db).execute(
            "SELECT duration, fps, width, height, frames, windows FROM videos WHERE path = ?",
            (str(videos[0].absolute()),)).fetchone()
        assert row[0] == pytest.approx(3.0, abs=0.05) and row[1] == pytest.approx(30.0) and row[2:5] == (64, 48, 90)
        assert row[5] >= 2                  # windows: 2.1 s spans every 0.5 s through 3 s


def test_index_search_and_tags_from_the_command_line(tiny_model, tmp_path):
    g = tmp_path / "gallery"
    _gallery(g, n=2)
    db = tmp_path / "g.db"
    # the tiny random model is never sure: lower the smoother's bar so that it makes segments
    r = realtime("index", str(g), "--db", str(db), "--model", str(tiny_model), "--device", "cpu",
                 "--stride", "0.5", "--no-progress", "--set", "smoothing.enter=0.1", "--set", "smoothing.exit=0.05")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "2 videos: 2 indexed, 0 unchanged, 0 failed" in r.stdout and str(db) in r.stdout

    r = realtime("tags", "--db", str(db), "--json")
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout)["tags"]
    assert found and all(t["label"] in TINY_LABELS and t["videos"] >= 1 and t["seconds"] > 0 for t in found)

    label = found[0]["label"]
    r = realtime("search", label.upper() + "S", "--db", str(db), "--json")   # case and plural
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["query"] == label.upper() + "S" and label in doc["labels"]
    assert doc["results"] and all(Path(x["path"]).is_absolute() for x in doc["results"])
    scores = [x["score"] for x in doc["results"]]
    assert scores == sorted(scores, reverse=True)
    seg = doc["results"][0]["segments"][0]
    assert set(seg) == {"start", "end", "label", "score"} and seg["end"] > seg["start"]

    with sqlite3.connect(db) as con:
        thumb = con.execute("SELECT thumbnail FROM segments WHERE thumbnail IS NOT NULL").fetchone()[0]
    assert thumb[:2] == b"\xff\xd8"                                          # a JPEG

    r = realtime("search", "anything", "--db", str(tmp_path / "none.db"))
    assert r.returncode != 0 and "no gallery database at" in r.stderr and "Traceback" not in r.stderr
    for args in ([], [label, "--like", str(g / "v0.mp4")]):
        r = realtime("search", *args, "--db", str(db))
        assert r.returncode != 0 and "QUERY) or --like VIDEO" in r.stderr, r.stderr
    r = realtime("search", "--like", str(tmp_path / "missing.mp4"), "--db", str(db))
    assert r.returncode != 0 and "missing.mp4: no such file" in r.stderr

    # likeness of an indexed video: the other video, with its segments scored by similarity
    r = realtime("search", "--like", str(g / "v0.mp4"), "--db", str(db), "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    assert [x["path"] for x in doc["results"]] == [str((g / "v1.mp4").absolute())]
    assert -1.0 <= doc["results"][0]["score"] <= 1.0


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_CLIPS.is_dir(), reason=f"real clips not found at {SHARED_CLIPS}")
def test_real_clips_are_found_by_their_activity(tmp_path):
    """The shared clips under names that say nothing, indexed with the default I3D on OpenVINO."""
    i3d_weights_or_skip()
    g = tmp_path / "camera roll"
    g.mkdir()
    clips = {"abseiling": "abseiling.mp4", "arm wrestling": "arm_wrestling.mp4",
             "pancake": "flipping_pancake.mkv", "shooting basketball": "shooting_basketball.avi"}
    names = {}
    for i, (query, clip) in enumerate(clips.items()):
        target = g / f"VID_{i:04d}{Path(clip).suffix}"
        os.symlink(SHARED_CLIPS / clip, target)
        names[query] = str(target)
    config = load_config(overrides=["model.name=i3d-kinetics400", "model.device=cpu", "model.engine=openvino"])
    with GalleryStore(tmp_path / "g.db") as store:
        summary = index_gallery(str(g), store, config, stride=1.0, progress=False)
        assert summary.indexed == 4, summary.failures
        for query, path in names.items():
            doc = search(store, query)
            assert doc["results"] and doc["results"][0]["path"] == path, (query, doc)
        assert {t["label"] for t in tags(store)["tags"]} >= {"abseiling", "arm wrestling", "flipping pancake"}

    # Likeness: a trimmed, re-encoded copy that is not in the gallery finds its original first
    copy = tmp_path / "copy.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-ss", "2", "-t", "5", "-i", str(SHARED_CLIPS / clips["abseiling"]),
                    "-c:v", "libx264", "-an", str(copy)], check=True, timeout=120)
    r = realtime("search", "--like", str(copy), "--db", str(tmp_path / "g.db"), "--json", "--model", "i3d-kinetics400",
                 "--engine", "openvino")
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    assert doc["like"] == str(copy) and [x["path"] for x in doc["results"]][0] == names["abseiling"]
    first, second = doc["results"][0]["score"], doc["results"][1]["score"]
    assert first > second + 0.2, doc
    # an indexed video: its own row is left out, the others ranked
    r = realtime("search", "--like", names["pancake"], "--db", str(tmp_path / "g.db"), "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert names["pancake"] not in [x["path"] for x in json.loads(r.stdout)["results"]]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/setup.sh --test installs it)")
def test_the_html_page_shows_hostile_names_as_text_in_a_real_browser(tiny_model, tmp_path):
    g = tmp_path / "gallery"
    # "/" cannot be in a file name, so the script tag spans a folder and a file
    hostile = g / "<script>document.title='pwned'<" / "script><img src=x onerror=document.title='pwned'>.mp4"
    hostile.parent.mkdir(parents=True)
    write_video(hostile, frames=75, size=(64, 48))
    db, page = tmp_path / "g.db", tmp_path / "page.html"
    r = realtime("index", str(g), "--db", str(db), "--model", str(tiny_model), "--device", "cpu", "--stride", "0.5",
                 "--no-progress", "--set", "smoothing.enter=0.1", "--set", "smoothing.exit=0.05")
    assert r.returncode == 0, r.stderr[-2000:]
    label = json.loads(realtime("tags", "--db", str(db), "--json").stdout)["tags"][0]["label"]
    r = realtime("search", label, "--db", str(db), "--html", str(page))
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"wrote {page}" in r.stdout

    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=60)
    assert dom.returncode == 0, dom.stderr[-2000:]
    parsed = _Tags()
    parsed.feed(dom.stdout)
    assert not [t for t, _ in parsed.tags if t == "script"]
    assert not [a for _, a in parsed.tags if "onerror" in a]
    assert "pwned" not in "".join(t for t, a in parsed.tags if t == "title")
    text = "".join(parsed.text)
    assert str(hostile) in text and f"realtime search: {label}" in text       # shown as text
    images = [a for t, a in parsed.tags if t == "img" and a.get("src", "").startswith("data:image/jpeg;base64,")]
    assert images                                                              # the thumbnails are in the page
    links = [a["href"] for t, a in parsed.tags if t == "a" and "#t=" in a.get("href", "")]
    assert links and all(h.startswith("file:///") and "<" not in h for h in links)

    shot = tmp_path / "page.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=800,600", page.as_uri()], capture_output=True, timeout=60)
    import cv2
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (600, 800)
    assert (image < 200).any()                                                 # something was drawn
