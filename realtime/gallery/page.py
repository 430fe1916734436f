"""``realtime search --html OUT``: the results as one self-contained web page.

Thumbnails are embedded (data: URIs), so the page is one file that can be mailed or copied. Each
segment's time range links to the video at that moment (a media fragment, ``file:///...#t=42,75``,
which browsers honour when they play a video file). Every string that comes from a file name or a
label is escaped, and the page's Content-Security-Policy allows no script at all: a video named
``<script>...</script>.mp4`` shows as text and runs nothing.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Mapping, Optional

from realtime.gallery.query import clock

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
h1 { font-size: 1.3rem; } .labels { color: #555; }
.video { border-top: 1px solid #ddd; padding: .8rem 0; }
.path { font-weight: 600; word-break: break-all; }
.segments { display: flex; flex-wrap: wrap; gap: .8rem; margin-top: .5rem; }
.segment { width: 170px; font-size: .85rem; }
.segment img { width: 160px; display: block; border-radius: 4px; background: #eee; min-height: 60px; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _href(path: str, start: Optional[float] = None, end: Optional[float] = None) -> str:
    uri = Path(path).absolute().as_uri()          # percent-encodes every unsafe character
    if start is not None:
        uri += f"#t={start:.2f}" + (f",{end:.2f}" if end is not None else "")
    return _e(uri)


def render_page(doc: Mapping[str, Any], thumbnails: Mapping[tuple[str, float], bytes]) -> str:
    """The page for a ``search`` document; ``thumbnails`` maps (path, segment start) to a JPEG."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
             'style-src \'unsafe-inline\'; media-src file:">',
             f"<title>realtime search: {_e(doc['query'])}</title>", f"<style>{_STYLE}</style></head><body>",
             f"<h1>Videos for &ldquo;{_e(doc['query'])}&rdquo;</h1>"]
    labels = doc.get("labels") or []
    parts.append(f'<p class="labels">matching labels: {", ".join(_e(x) for x in labels) or "none"}; '
                 f'{len(doc.get("results", []))} videos</p>')
    for i, r in enumerate(doc.get("results", []), 1):
        parts.append('<div class="video">')
        parts.append(f'<div><a class="path" href="{_href(r["path"])}">{i}. {_e(r["path"])}</a> '
                     f'&mdash; {_e(r["label"])} {float(r["score"]):.2f}</div><div class="segments">')
        for seg in r.get("segments", []):
            jpeg = thumbnails.get((r["path"], seg["start"]))
            img = (f'<img alt="{_e(seg["label"])} at {clock(seg["start"])}" '
                   f'src="data:image/jpeg;base64,{base64.b64encode(jpeg).decode("ascii")}">' if jpeg else
                   f'<img alt="{_e(seg["label"])}">')
            parts.append(f'<div class="segment">{img}<a href="{_href(r["path"], seg["start"], seg["end"])}">'
                         f'{clock(seg["start"])}&ndash;{clock(seg["end"])}</a> {_e(seg["label"])} '
                         f'{float(seg["score"]):.2f}</div>')
        parts.append("</div></div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
