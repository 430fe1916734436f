"""What a gallery database holds, as plain rows to compare two indexing runs."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def gallery_rows(db: Path, digits: int = 4) -> dict[str, list[tuple]]:
    """Videos (status, windows), their top labels and their segments, ordered, scores rounded."""
    with sqlite3.connect(db) as con:
        return {
            "videos": con.execute("SELECT path, status, windows FROM videos ORDER BY path").fetchall(),
            "labels": con.execute(f"SELECT v.path, l.label, round(l.score, {digits}) FROM video_labels l "
                                  "JOIN videos v ON v.id = l.video_id ORDER BY v.path, l.label").fetchall(),
            "segments": con.execute(f"SELECT v.path, s.start, s.end, s.label, round(s.score, {digits}), s.thumb_time "
                                    "FROM segments s JOIN videos v ON v.id = s.video_id "
                                    "ORDER BY v.path, s.start").fetchall(),
        }
