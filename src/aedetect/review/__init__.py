"""The review loop: flagged transactions become alerts in a database (SQLite or PostgreSQL),
investigators claim and decide them in a web app, and their verdicts flow back as labels.

`AlertStore` (the database), `AlertWriter` (the service's background writer), `create_review_app`
(the pages and the JSON API). Needs the `review` extra (`pip install 'aedetect[review]'`).
"""

from aedetect._imports import lazy_exports

__all__ = ["AlertSource", "AlertStore", "AlertWriter", "ReviewError", "create_review_app"]
__getattr__ = lazy_exports(__name__, {
    "AlertStore": "store", "ReviewError": "store", "AlertSource": "alerts", "AlertWriter": "writer",
    "create_review_app": "app"})
