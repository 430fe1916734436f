"""``realtime index``, ``realtime search`` and ``realtime tags``: the video gallery."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from realtime.cli.common import (add_config_options, add_log_level, add_model_options, model_overrides,
                                 setup_logging)
from realtime.core.errors import ConfigError

DB_HELP = "the gallery database (default $REALTIME_GALLERY_DB or ~/.local/share/realtime/gallery.db)"


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``index``, ``search`` and ``tags`` to ``realtime``'s subcommands."""
    p = sub.add_parser("index", help="classify every video of a folder tree into the gallery database",
                       description="Walk GALLERY (sub-folders too; hidden files skipped; links followed once), "
                                   "classify each video through its whole length and store its top labels and "
                                   "its segments (runs of one stable label, with a thumbnail). Unchanged videos "
                                   "are not read again; each video is committed on its own.")
    p.add_argument("gallery", metavar="GALLERY", help="a folder of videos")
    p.add_argument("--db", metavar="PATH", help=DB_HELP)
    p.add_argument("--stride", type=float, default=1.0, metavar="S",
                   help="seconds between classified windows (default 1.0)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="decode processes feeding the model (default 1; 0 decodes in this process)")
    p.add_argument("--batch", type=int, default=None, metavar="B",
                   help="windows per pass of the model, from any of the videos in flight "
                        "(default 1 on a CPU, where larger batches are no faster, 8 on a GPU)")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="decode and classify on a Ray cluster: a new local Ray without ADDRESS, else the "
                        "cluster there (e.g. 10.0.0.5:6379 or auto); needs " + "'pip install realtime[ray]'")
    p.add_argument("--prune", action="store_true", help="forget videos under GALLERY that no longer exist")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_options(p)
    add_model_options(p)
    add_log_level(p, "warning")
    p.set_defaults(func=cmd_index)

    s = sub.add_parser("search", help="find videos in the gallery by activity words, or by likeness to a video")
    s.add_argument("query", metavar="QUERY", nargs="?", help="activity words, e.g. guitar, 'push ups', pancake")
    s.add_argument("--like", metavar="VIDEO",
                   help="instead: videos that look like VIDEO (indexed or not; a video not in the gallery is "
                        "read with --model, which must be the model the gallery was indexed with)")
    add_model_options(s, "with --like and a video not in the gallery: the model it was indexed with "
                         "(default i3d-kinetics400)")
    s.add_argument("--db", metavar="PATH", help=DB_HELP)
    s.add_argument("--top", type=int, default=10, metavar="N", help="at most N videos (default 10)")
    s.add_argument("--json", action="store_true", help="one JSON document on stdout")
    s.add_argument("--html", metavar="OUT", help="also write the results as a self-contained web page "
                                                 "(thumbnails; segment times open the video there)")
    add_log_level(s, "warning")
    s.set_defaults(func=cmd_search)

    t = sub.add_parser("tags", help="the labels found in the gallery, with how many videos and seconds")
    t.add_argument("--db", metavar="PATH", help=DB_HELP)
    t.add_argument("--json", action="store_true", help="one JSON document on stdout")
    add_log_level(t, "warning")
    t.set_defaults(func=cmd_tags)


def _store(args: argparse.Namespace, must_exist: bool):
    from realtime.gallery.store import GalleryStore, default_db_path
    path = args.db or default_db_path()
    if must_exist and not Path(path).expanduser().is_file():
        raise ConfigError(f"no gallery database at {path}: run `realtime index GALLERY` first"
                          + ("" if args.db else " (or pass --db)"))
    return GalleryStore(path)


def cmd_index(args: argparse.Namespace) -> int:
    from realtime.config import load_config
    from realtime.gallery.index import index_gallery

    setup_logging(args.log_level)
    if args.stride <= 0:
        raise ConfigError(f"--stride must be > 0, got {args.stride}")
    if args.workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {args.workers}")
    if args.batch is not None and args.batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {args.batch}")
    config = load_config(args.config, model_overrides(args))
    with _store(args, must_exist=False) as store:
        summary = index_gallery(args.gallery, store, config, stride=args.stride, prune=args.prune,
                                progress=not args.no_progress, workers=args.workers, max_batch=args.batch,
                                ray=args.ray)
        print(summary.line(), flush=True)
        print(f"database: {store.path}", flush=True)
    return 130 if summary.interrupted else 0


def cmd_search(args: argparse.Namespace) -> int:
    from realtime.gallery.query import format_search, search

    setup_logging(args.log_level)
    if args.top < 1:
        raise ConfigError(f"--top must be >= 1, got {args.top}")
    if (args.query is None) == (args.like is None):
        raise ConfigError("give activity words (QUERY) or --like VIDEO, one of them")
    with _store(args, must_exist=True) as store:
        doc = _like(args, store) if args.like is not None else search(store, args.query, args.top)
        if args.html:
            from realtime.gallery.page import render_page
            page = render_page(doc, store.thumbnails([r["path"] for r in doc["results"]], doc["labels"]))
            try:
                Path(args.html).write_text(page, encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"--html {args.html}: cannot write it ({exc.strerror or exc})") from exc
    print(json.dumps(doc) if args.json else format_search(doc), flush=True)
    if args.html and not args.json:
        print(f"wrote {args.html}", flush=True)
    return 0


def _like(args: argparse.Namespace, store) -> dict:
    from realtime.gallery.query import like
    from realtime.gallery.vectors import from_blob

    video = Path(args.like).expanduser()
    if not video.is_file():
        raise ConfigError(f"--like {args.like}: no such file")
    path = str(video.absolute())
    stored = store.embedding_of(path)
    if stored is not None:
        vector = from_blob(stored)
    else:                        # not in the gallery: read it now with the gallery's model
        from realtime.config import load_config
        from realtime.gallery.index import embed_video
        from realtime.models import classifier_for
        config = load_config(None, model_overrides(args))
        vector = embed_video(path, classifier_for(config.model))
    return like(store, vector, args.top, exclude=path, like_path=path)


def cmd_tags(args: argparse.Namespace) -> int:
    from realtime.gallery.query import format_tags, tags

    setup_logging(args.log_level)
    with _store(args, must_exist=True) as store:
        doc = tags(store)
    print(json.dumps(doc) if args.json else format_tags(doc), flush=True)
    return 0
