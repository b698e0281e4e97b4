"""Flagged rows as alerts: what an alert keeps of its transaction and its model, the same
whichever way it came in (`aedetect score --alerts`, `serve --alerts`, `alerts load`), and the
labels that flow back out (`alerts export`, `train --labels`)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aedetect.errors import DataError
from aedetect.review.store import jsonable

SCORED_COLUMNS = ("row", "score", "flag")
ID_NAMES = ("transaction_id", "tx_id", "id")
AMOUNT_NAMES = ("amount", "Amount")


@dataclass(frozen=True)
class AlertSource:
    """What every alert from one model says about it, and where a row's id, amount and entity are."""

    model_id: str
    model_version: str
    threshold: float
    id_column: str | None = None
    amount_column: str | None = None
    entity_columns: tuple[str, ...] = ()
    history_columns: tuple[str, ...] = field(default=())
    time_column: str | None = None  # the model's time column: when a transaction happened
    time_format: str | None = None  # its date format, when the schema names one

    def event_times(self, values) -> np.ndarray:
        """Seconds of the time column's `values`, read as the model reads its time column
        (`aedetect.data.values.read_datetimes`); NaN where a value is missing or unreadable:
        the alert then keeps no time rather than failing to be made."""
        from aedetect.data.values import read_datetimes

        return read_datetimes(values, self.time_format)[0]

    def alert(self, transaction: dict, score: float, reasons: list[dict], tx_id=None,
              history: dict | None = None, event_time: float | None = None) -> dict:
        """One alert's columns for `AlertStore.add_alerts`. A row without an id gets one from its
        values ("sha256:..."), the same each time it is sent. `event_time`: the transaction's
        time in seconds, else read from its time column."""
        if event_time is None and self.time_column is not None and transaction.get(self.time_column) is not None:
            event_time = float(self.event_times([transaction[self.time_column]])[0])
        transaction = {k: jsonable(v) for k, v in transaction.items()}
        if tx_id is None:
            tx_id = transaction.get(self.id_column) if self.id_column else None
        if tx_id is None or tx_id == "":
            # No id (a service request without one): the row's own values name it, so the same
            # transaction sent twice is still one alert.
            content = json.dumps(transaction, sort_keys=True, default=str).encode()
            tx_id = "sha256:" + hashlib.sha256(content).hexdigest()[:24]
        amount = _number(transaction.get(self.amount_column)) if self.amount_column else None
        entity = next((f"{c}={transaction[c]}" for c in self.entity_columns
                       if transaction.get(c) not in (None, "")), None)
        return {"transaction_id": str(tx_id)[:200], "transaction": transaction, "score": float(score),
                "threshold": float(self.threshold), "amount": amount, "model_id": self.model_id,
                "model_version": self.model_version, "reasons": reasons,
                "top_reason": reasons[0]["feature"] if reasons else None,
                "entity": None if entity is None else entity[:300],
                "history": None if not history else {k: jsonable(v) for k, v in history.items()},
                "event_time": event_time if event_time is not None and np.isfinite(event_time) else None}


def describe_history(history: dict | None) -> list[tuple[str, object, str]]:
    """An alert's history features as (name, value, the value in the team's words), e.g.
    `card_id.amount_ratio_7d`, -4.02, `amount 0.018x card_id's usual (7d)`; a value that cannot
    be described keeps an empty text."""
    import numpy as np

    from aedetect.data.history import describe_feature

    if not history:
        return []
    out = []
    for name, value in history.items():
        entity = name.rsplit(".", 1)[0]
        others = {k: np.array([v if isinstance(v, (int, float)) else np.nan], "float64")
                  for k, v in history.items() if k.rsplit(".", 1)[0] == entity}
        try:
            text = str(describe_feature(name, np.array([value], "float64"), others)[0])
        except (ValueError, TypeError, KeyError):
            text = ""
        out.append((name, value, text))
    return out


def _number(value) -> float | None:
    """An amount as a number (a scored CSV keeps it as text), None when it is not one."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def model_version(manifest) -> str:
    """A short content version of a model folder: the sha256 of its files' hashes."""
    return hashlib.sha256(json.dumps(manifest.files, sort_keys=True).encode()).hexdigest()[:12]


def source_for(detector, model_dir: str | os.PathLike, id_column: str | None = None,
               columns: list[str] | None = None) -> AlertSource:
    """The alert source of a loaded model (`serving.runtime.open_scorer` or the estimator) from
    folder `model_dir`. The transaction id is `id_column`, else a column named transaction_id,
    tx_id or id among `columns`, else the schema's first id column that is no entity (a card);
    the amount is the history's amount column, else a column named amount; the time is the
    schema's time column."""
    schema = detector.dataset_schema
    names = list(columns) if columns is not None else schema.names
    history = schema.history
    entities = history.entities if history is not None else []
    id_column = (id_column or next((c for c in ID_NAMES if c in names), None)
                 or next((c for c in schema.ids if c not in entities and c in names), None))
    amount = history.amount if history is not None else next((c for c in AMOUNT_NAMES if c in names), None)
    return AlertSource(model_id=Path(model_dir).resolve().name, model_version=model_version(detector.manifest_),
                       threshold=float(detector.threshold_), id_column=id_column,
                       amount_column=amount if amount in names else None,
                       entity_columns=tuple(history.entities) if history is not None else (),
                       history_columns=tuple(schema.history_features) if history is not None else (),
                       time_column=schema.time,
                       time_format=schema.column(schema.time).format if schema.time is not None else None)


def reason_columns(names: list[str]) -> list[int]:
    """The k of every `top{k}_feature` column of a scored table, in order."""
    ks = sorted(int(c[3:-8]) for c in names if c.startswith("top") and c.endswith("_feature") and c[3:-8].isdigit())
    return ks


def alerts_from_table(frame, source: AlertSource) -> list[dict]:
    """Alerts from a scored table (pandas) that holds its rows' columns, `score`, `flag` and the
    `top{k}_feature/_reason/_contribution` columns; only rows with flag 1 become alerts."""
    names = list(frame.columns)
    if "score" not in names:
        raise DataError(f"the scored table has no 'score' column; its columns: {names[:20]}")
    if source.id_column is None or source.id_column not in names:
        raise DataError("the scored table has no transaction id column"
                        + (f" {source.id_column!r}" if source.id_column else "")
                        + "; name it with --id-column (and score with --id-columns or --all-columns)")
    flags = frame["flag"].astype(bool) if "flag" in names else frame["score"] > source.threshold
    ks = reason_columns(names)
    skip = set(SCORED_COLUMNS) | {f"top{k}_{part}" for k in ks for part in ("feature", "reason", "contribution")}
    history = [c for c in source.history_columns if c in names]
    tx_cols = [c for c in names if c not in skip and c not in history]
    flagged = frame.loc[flags.to_numpy()]
    times = (source.event_times(flagged[source.time_column]) if source.time_column in names
             else np.full(len(flagged), np.nan))
    out = []
    for rec, when in zip(flagged.to_dict("records"), times.tolist(), strict=True):
        reasons = [{"feature": rec[f"top{k}_feature"], "reason": rec.get(f"top{k}_reason") or "",
                    "contribution": jsonable(rec.get(f"top{k}_contribution"))}
                   for k in ks if rec.get(f"top{k}_feature") not in (None, "")]
        reasons = [{k: jsonable(v) for k, v in r.items()} for r in reasons]
        out.append(source.alert({c: rec[c] for c in tx_cols}, rec["score"], reasons,
                                history={c: rec[c] for c in history} or None, event_time=when))
    return out


def read_alert_file(path: str | os.PathLike, source: AlertSource, chunk_rows: int = 50_000):
    """Alerts from a scored CSV/Parquet file, chunk by chunk (lists of alert dicts)."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.suffix == ".parquet":
        batches = pq.ParquetFile(path).iter_batches(batch_size=chunk_rows)
    else:
        # Every input column as text: an id such as 0742 keeps its zero, as the scorer read it.
        head = pcsv.open_csv(path, read_options=pcsv.ReadOptions(block_size=1 << 16))
        text = {c: "string" for c in head.schema.names if c not in ("row", "score", "flag")
                and not c.endswith("_contribution")}
        head.close()
        import pyarrow as pa

        batches = pcsv.open_csv(path, read_options=pcsv.ReadOptions(block_size=16 << 20),
                                convert_options=pcsv.ConvertOptions(
                                    column_types={c: pa.string() for c in text}))
    for batch in batches:
        yield alerts_from_table(batch.to_pandas(), source)
