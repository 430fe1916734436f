"""Video search: index a gallery of videos by activity (``index``), store it (``store``, SQLite),
and read it back by words (``query``)."""
