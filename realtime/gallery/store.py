"""The gallery database: one SQLite file, versioned schema, parameterised queries only.

Tables: ``videos`` (one row per file: its identity for incremental runs, its facts, and why it
failed if it did), ``video_labels`` (a video's top-k labels, probabilities averaged over its
windows) and ``segments`` (runs of one stable label, with a JPEG thumbnail of the most confident
moment). Each video is written in one transaction, so an interrupted run loses at most the video
in flight. ``PRAGMA user_version`` holds the schema version; :data:`MIGRATIONS` brings an older
file up to date when it is opened.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from realtime.core.errors import ConfigError

DB_ENV = "REALTIME_GALLERY_DB"

MIGRATIONS: tuple[str, ...] = (
    # version 1
    """
    CREATE TABLE videos (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        model TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
        error TEXT,
        duration REAL, fps REAL, width INTEGER, height INTEGER, frames INTEGER,
        windows INTEGER,
        indexed_at REAL NOT NULL
    );
    CREATE TABLE video_labels (
        video_id INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
        rank INTEGER NOT NULL,
        label TEXT NOT NULL,
        score REAL NOT NULL,
        PRIMARY KEY (video_id, rank)
    );
    CREATE INDEX video_labels_label ON video_labels(label);
    CREATE TABLE segments (
        id INTEGER PRIMARY KEY,
        video_id INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
        start REAL NOT NULL,
        end REAL NOT NULL,
        label TEXT NOT NULL,
        score REAL NOT NULL,
        thumb_time REAL,
        thumbnail BLOB
    );
    CREATE INDEX segments_label ON segments(label);
    CREATE INDEX segments_video ON segments(video_id);
    """,
    # version 2: the distinct labels on their own (a query matches words against them), and
    # covering indexes for ranking by label without reading the rows
    """
    CREATE TABLE labels (label TEXT PRIMARY KEY) WITHOUT ROWID;
    INSERT OR IGNORE INTO labels SELECT label FROM video_labels UNION SELECT label FROM segments;
    CREATE INDEX video_labels_rank ON video_labels(label, rank, score, video_id);
    CREATE INDEX segments_rank ON segments(label, score, video_id);
    """,
    # version 3: embeddings for likeness search (see realtime.gallery.vectors)
    """
    ALTER TABLE segments ADD COLUMN embedding BLOB;
    CREATE TABLE vectors (
        video_id INTEGER PRIMARY KEY REFERENCES videos(id) ON DELETE CASCADE,
        sketch BLOB NOT NULL,
        embedding BLOB NOT NULL
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def _marks(values: Sequence[object]) -> str:
    """``?, ?, ?``: one parameter placeholder per value, for ``IN (...)``."""
    return ",".join("?" * len(values))


def default_db_path() -> Path:
    """``$REALTIME_GALLERY_DB``, else ``$XDG_DATA_HOME/realtime/gallery.db`` (``~/.local/share``)."""
    if os.environ.get(DB_ENV):
        return Path(os.environ[DB_ENV]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "realtime" / "gallery.db"


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    label: str
    score: float
    thumb_time: Optional[float] = None
    thumbnail: Optional[bytes] = None      # JPEG
    embedding: Optional[bytes] = None      # float16, normalised (realtime.gallery.vectors)


@dataclass(frozen=True)
class VideoFacts:
    duration: Optional[float]
    fps: Optional[float]
    width: Optional[int]
    height: Optional[int]
    frames: Optional[int]


@dataclass
class VideoRecord:
    path: str
    size: int
    mtime_ns: int
    model: str
    status: str = "ok"
    error: Optional[str] = None
    facts: Optional[VideoFacts] = None
    windows: int = 0
    labels: Sequence[tuple[str, float]] = ()          # top-k, best first
    segments: Sequence[Segment] = field(default_factory=tuple)
    embedding: Optional[bytes] = None                 # the clip's, float16 (realtime.gallery.vectors)
    sketch: Optional[bytes] = None                    # its int8 sketch


class GalleryStore:
    """The database at ``path``; created (and its folder) on first use, migrated when older."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=30.0)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"--db {self.path}: cannot open the database ({exc})") from exc
        try:
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA journal_mode = WAL")     # readers are not blocked by a running index
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise ConfigError(f"--db {self.path}: not a gallery database ({exc})") from exc
        self._migrate(version)

    def _migrate(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            self._db.close()
            raise ConfigError(f"--db {self.path}: schema version {version} is newer than this realtime "
                              f"knows ({SCHEMA_VERSION}); upgrade realtime")
        for number in range(version, SCHEMA_VERSION):
            with self._db:
                self._db.executescript("BEGIN;" + MIGRATIONS[number] + f"PRAGMA user_version = {number + 1};COMMIT;")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "GalleryStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    # ------------------------------------------------------------------ writing

    def unchanged(self, path: str, size: int, mtime_ns: int, model: str) -> bool:
        """Whether ``path`` is indexed (or recorded as failed) as it is now, with ``model``."""
        row = self._db.execute("SELECT size, mtime_ns, model FROM videos WHERE path = ?", (path,)).fetchone()
        return row is not None and tuple(row) == (size, mtime_ns, model)

    def put(self, record: VideoRecord) -> None:
        """Replace everything stored about ``record.path`` with ``record``, in one transaction."""
        f = record.facts or VideoFacts(None, None, None, None, None)
        with self._db:
            self._db.execute("DELETE FROM videos WHERE path = ?", (record.path,))
            cur = self._db.execute(
                "INSERT INTO videos (path, size, mtime_ns, model, status, error, duration, fps, width, height,"
                " frames, windows, indexed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.path, record.size, record.mtime_ns, record.model, record.status, record.error,
                 f.duration, f.fps, f.width, f.height, f.frames, record.windows, time.time()))
            video_id = cur.lastrowid
            self._db.executemany("INSERT INTO video_labels (video_id, rank, label, score) VALUES (?, ?, ?, ?)",
                                 [(video_id, i, label, float(score)) for i, (label, score) in enumerate(record.labels)])
            self._db.executemany(
                "INSERT INTO segments (video_id, start, end, label, score, thumb_time, thumbnail, embedding)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(video_id, s.start, s.end, s.label, float(s.score), s.thumb_time, s.thumbnail, s.embedding)
                 for s in record.segments])
            if record.embedding is not None and record.sketch is not None:
                self._db.execute("INSERT INTO vectors (video_id, sketch, embedding) VALUES (?, ?, ?)",
                                 (video_id, record.sketch, record.embedding))
            self._db.executemany("INSERT OR IGNORE INTO labels (label) VALUES (?)",
                                 [(label,) for label, _ in record.labels] + [(s.label,) for s in record.segments])

    def paths(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT path FROM videos ORDER BY path")]

    def remove(self, paths: Sequence[str]) -> int:
        with self._db:
            self._db.executemany("DELETE FROM videos WHERE path = ?", [(p,) for p in paths])
        return len(paths)

    # ------------------------------------------------------------------ reading

    def labels(self) -> list[str]:
        """Every label ever stored, as a video label or a segment's (a label whose videos are
        all gone may stay: it then matches nothing)."""
        return [row[0] for row in self._db.execute("SELECT label FROM labels ORDER BY label")]

    def rank(self, labels: Sequence[str], depth: int, top: int) -> list[tuple[int, str, float, str]]:
        """The ``top`` ok videos with the best evidence for one of ``labels``: a top-``depth``
        video label's mean probability or a segment's score. (video id, path, score, label),
        best first."""
        if not labels:
            return []
        rows = self._db.execute(
            f"SELECT e.video_id, v.path, e.score, e.label FROM ("
            f"  SELECT video_id, label, score FROM video_labels WHERE label IN ({_marks(labels)}) AND rank < ?"
            f"  UNION ALL SELECT video_id, label, score FROM segments WHERE label IN ({_marks(labels)})) e"
            f" JOIN videos v ON v.id = e.video_id WHERE v.status = 'ok'"
            f" ORDER BY e.score DESC, v.path", (*labels, depth, *labels))
        best: dict[int, tuple[int, str, float, str]] = {}
        for vid, path, score, label in rows:
            if vid not in best:
                best[vid] = (vid, path, float(score), label)
                if len(best) == top:
                    break
        return list(best.values())

    def segments_of(self, video_ids: Sequence[int], labels: Sequence[str]) -> dict[int, list[Segment]]:
        """The segments with one of ``labels`` of each video in ``video_ids``, in time order
        (no thumbnails)."""
        if not video_ids or not labels:
            return {}
        rows = self._db.execute(
            f"SELECT video_id, start, end, label, score, thumb_time FROM segments"
            f" WHERE video_id IN ({_marks(video_ids)}) AND label IN ({_marks(labels)})"
            f" ORDER BY video_id, start", (*video_ids, *labels))
        found: dict[int, list[Segment]] = {}
        for vid, start, end, label, score, thumb_time in rows:
            found.setdefault(vid, []).append(Segment(start, end, label, float(score), thumb_time))
        return found

    def thumbnails(self, paths: Sequence[str], labels: Sequence[str]) -> dict[tuple[str, float], bytes]:
        """JPEG thumbnails of the segments with one of ``labels`` of the videos at ``paths``,
        by (path, segment start)."""
        if not paths or not labels:
            return {}
        rows = self._db.execute(
            f"SELECT v.path, s.start, s.thumbnail FROM segments s JOIN videos v ON v.id = s.video_id"
            f" WHERE v.path IN ({_marks(paths)}) AND s.label IN ({_marks(labels)})"
            f" AND s.thumbnail IS NOT NULL", (*paths, *labels))
        return {(path, float(start)): bytes(thumb) for path, start, thumb in rows}

    def embedding_of(self, path: str) -> Optional[bytes]:
        row = self._db.execute("SELECT e.embedding FROM vectors e JOIN videos v ON v.id = e.video_id"
                               " WHERE v.path = ?", (path,)).fetchone()
        return None if row is None else bytes(row[0])

    def sketches(self) -> tuple[list[int], bytes]:
        """Every ok video's id and int8 sketch (all sketches joined, in id order)."""
        ids, blobs = [], []
        for vid, blob in self._db.execute("SELECT e.video_id, e.sketch FROM vectors e JOIN videos v"
                                          " ON v.id = e.video_id WHERE v.status = 'ok' ORDER BY e.video_id"):
            ids.append(vid)
            blobs.append(blob)
        return ids, b"".join(blobs)

    def candidates(self, video_ids: Sequence[int]) -> list[tuple[int, str, bytes, Optional[str]]]:
        """(id, path, whole embedding, best label) of these videos."""
        if not video_ids:
            return []
        rows = self._db.execute(
            f"SELECT v.id, v.path, e.embedding, (SELECT label FROM video_labels l WHERE l.video_id = v.id"
            f" AND l.rank = 0) FROM videos v JOIN vectors e ON e.video_id = v.id"
            f" WHERE v.id IN ({_marks(video_ids)})", tuple(video_ids))
        return [(vid, path, bytes(blob), label) for vid, path, blob, label in rows]

    def segment_embeddings(self, video_ids: Sequence[int]) -> dict[int, list[tuple[Segment, Optional[bytes]]]]:
        """Each video's segments (no thumbnails) with their embeddings, in time order."""
        if not video_ids:
            return {}
        rows = self._db.execute(
            f"SELECT video_id, start, end, label, score, thumb_time, embedding FROM segments"
            f" WHERE video_id IN ({_marks(video_ids)}) ORDER BY video_id, start", tuple(video_ids))
        found: dict[int, list[tuple[Segment, Optional[bytes]]]] = {}
        for vid, start, end, label, score, thumb_time, emb in rows:
            found.setdefault(vid, []).append((Segment(start, end, label, float(score), thumb_time), emb))
        return found

    def tags(self) -> list[tuple[str, int, float]]:
        """(label, videos, seconds) of every segment label, most seconds first."""
        rows = self._db.execute(
            "SELECT s.label, COUNT(DISTINCT s.video_id), SUM(s.end - s.start) FROM segments s"
            " JOIN videos v ON v.id = s.video_id WHERE v.status = 'ok' GROUP BY s.label"
            " ORDER BY SUM(s.end - s.start) DESC, s.label")
        return [(label, int(n), round(float(seconds or 0.0), 3)) for label, n, seconds in rows]

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT status, COUNT(*) FROM videos GROUP BY status")
        return {status: int(n) for status, n in rows}

    def failures(self) -> list[tuple[str, str]]:
        return [(p, e or "") for p, e in self._db.execute(
            "SELECT path, error FROM videos WHERE status = 'failed' ORDER BY path")]
