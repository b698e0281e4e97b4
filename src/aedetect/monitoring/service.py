"""Online drift monitoring for the REST service: a fixed-size ring buffer of the latest scored
rows (inputs and scores), compared with the model's reference on demand.

`install_drift(app, ...)` adds `GET /v1/drift` (the latest comparison, see
`aedetect.monitoring.reference.compare_batch`) and registers Prometheus gauges on the service's registry:
`aedetect_drift_psi{column}`, `aedetect_drift_score_psi`, `aedetect_drift_flagged_share` (and its
promised `_low`/`_high`), `aedetect_drift_columns_drifted`, `aedetect_drift_alarm` and
`aedetect_drift_window_rows`. The buffer is allocated once at its full size, so memory does not
grow with traffic; a category value the reference does not know is kept cut to 100 characters
(`bounded_name`), so a hostile megabyte-long category costs no more than a short one, and
`GET /v1/drift` names at most 10 new categories per column, each at most 100 characters. The
comparison is recomputed only when rows arrived since the last one.
"""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
from fastapi import APIRouter, HTTPException
from prometheus_client.core import GaugeMetricFamily

from aedetect.monitoring.reference import (
    DriftSettings,
    Reference,
    bounded_name,
    compare_batch,
    load_reference,
    seconds,
)

MIN_ROWS = 200  # below this a window's statistics say little; gauges report the row count only


def bounded_categories(values: pd.Series, known: frozenset[str]) -> np.ndarray:
    """Category values as the drift buffer keeps them: a missing value stays missing, a category
    of the reference stays as it is (the statistics count it), any other value becomes text of at
    most 100 characters (`bounded_name`; the statistics put all of them in one "other" cell)."""
    raw = np.asarray(values, dtype=object)
    out = np.full(len(raw), None, dtype=object)
    for i in np.flatnonzero(~pd.isna(raw)):
        text = str(raw[i])
        out[i] = text if text in known else bounded_name(text)
    return out


class RingBuffer:
    """The latest `size` rows of each column and their scores, in preallocated arrays."""

    def __init__(self, columns: dict[str, str], size: int):
        self.size = int(size)
        self.columns = {c: np.full(self.size, np.nan if k == "numeric" else None,
                                   dtype="float64" if k == "numeric" else object)
                        for c, k in columns.items()}
        self.scores = np.full(self.size, np.nan)
        self.count = 0  # rows held (at most size)
        self.seen = 0  # rows added since the start
        self._next = 0
        self._lock = threading.Lock()

    def add(self, x, scores: np.ndarray) -> None:
        """Append rows: `x` maps each column to its values (a DataFrame or a dict of arrays)."""
        scores = np.asarray(scores, dtype="float64")[-self.size:]
        n = len(scores)
        with self._lock:
            idx = (self._next + np.arange(n)) % self.size
            for c, buf in self.columns.items():
                buf[idx] = np.asarray(x[c])[-self.size:]
            self.scores[idx] = scores
            self._next = int((self._next + n) % self.size)
            self.count = min(self.size, self.count + n)
            self.seen += n

    def snapshot(self) -> tuple[pd.DataFrame, np.ndarray, int]:
        with self._lock:
            k = self.count
            return (pd.DataFrame({c: b[:k].copy() for c, b in self.columns.items()}),
                    self.scores[:k].copy(), self.seen)

    @property
    def nbytes(self) -> int:
        return self.scores.nbytes + sum(b.nbytes for b in self.columns.values())


class DriftMonitor:
    """The rolling window of one model and its latest comparison with the reference."""

    def __init__(self, ref: Reference | None, size: int = 10_000,
                 settings: DriftSettings | None = None):
        self.ref, self.settings = ref, settings or DriftSettings()
        kinds = {c: p["kind"] for c, p in ref.columns.items()} if ref else {}
        self.buffer = RingBuffer(kinds, size if ref else 1)
        self._known = {c: frozenset(p["categories"]) for c, p in (ref.columns.items() if ref else ())
                       if p["kind"] == "categorical"}
        self._latest: dict | None = None
        self._latest_seen = -1

    def observe(self, x, scores) -> None:
        """Add scored rows: `x` a DataFrame or a mapping of columns (as `Preprocessor.canonical`
        gives them), or a matrix in the reference's column order."""
        if self.ref is None:
            return
        if isinstance(x, (pd.DataFrame, dict)):
            x = {c: x[c] for c in self.ref.columns}
        else:
            x = dict(zip(self.ref.columns, np.asarray(x).T, strict=True))
        for c, p in self.ref.columns.items():
            if p.get("transform") == "hour_of_day":  # kept as seconds; the comparison takes the hour
                x[c] = seconds(x[c])
        for c, known in self._known.items():  # bounded: traffic cannot fill the window with long text
            x[c] = bounded_categories(x[c], known)
        self.buffer.add(x, scores)

    def latest(self) -> dict:
        if self.ref is None:
            return {"status": "no reference"}
        x, scores, seen = self.buffer.snapshot()
        if seen == self._latest_seen and self._latest is not None:
            return self._latest
        out = {"status": "collecting", "window_rows": len(scores), "rows_seen": seen,
               "window_size": self.buffer.size, "min_rows": MIN_ROWS}
        if len(scores) >= MIN_ROWS:
            out = {**out, "status": "ok", **compare_batch(self.ref, x, scores, None, self.settings)}
        self._latest, self._latest_seen = out, seen
        return out

    def collect(self):
        """Prometheus collector: gauges from the latest comparison."""
        d = self.latest()
        if d["status"] == "no reference":
            return
        rows = GaugeMetricFamily("aedetect_drift_window_rows", "rows in the rolling drift window")
        rows.add_metric([], d["window_rows"])
        yield rows
        if d["status"] != "ok":
            return
        by_col = GaugeMetricFamily("aedetect_drift_psi", "population stability index of each input "
                                   "column, rolling window against the reference", labels=["column"])
        for c, t in d["columns"].items():
            by_col.add_metric([c], t["psi"])
        yield by_col
        f = d["flagged"]
        for name, value, text in [
            ("aedetect_drift_score_psi", d["score"]["psi"], "PSI of the anomaly score"),
            ("aedetect_drift_flagged_share", f["share"], "share of the window's rows flagged"),
            ("aedetect_drift_flagged_share_low", f["low"], "promised flagged share, interval low"),
            ("aedetect_drift_flagged_share_high", f["high"], "promised flagged share, interval high"),
            ("aedetect_drift_columns_drifted", len(d["drifted_columns"]), "columns that alarm"),
            ("aedetect_drift_alarm", int(d["alarm"]), "1 when any drift alarm fires"),
        ]:
            g = GaugeMetricFamily(name, text)
            g.add_metric([], value)
            yield g


def install_drift(app, model_dir, registry, dependencies=(), size: int = 10_000,
                  responses: dict | None = None) -> DriftMonitor:
    """Add `GET /v1/drift` and the drift gauges to a service app; return the monitor whose
    `observe(x, scores)` the scoring route calls. `dependencies`: the app's guards (the API key,
    when one is set)."""
    monitor = DriftMonitor(load_reference(model_dir), size)
    registry.register(monitor)
    router = APIRouter(dependencies=list(dependencies))

    @router.get("/v1/drift", responses=responses or {})
    def drift() -> dict:
        if monitor.ref is None:
            raise HTTPException(404, "this model folder has no reference.json (trained before drift "
                                "monitoring); retrain it to monitor drift")
        return monitor.latest()

    app.include_router(router)
    app.state.drift = monitor
    return monitor
