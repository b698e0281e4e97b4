"""Labels from reviewed alerts (`aedetect alerts export`, `AlertStore.labels()`) joined to a table
by transaction id: for training (`join_labels`: the verdicts go into the label column) and for
monitoring (`row_verdicts`: each row's verdict, if it has one).

A labels table has a `transaction_id` column and a `label` column (1 fraud, 0 legit); other
columns (decided_at, decided_by, model_id) are kept out of the join. Ids compare as text exactly
as written (`00042` is not `42`); a number in the data's id column (a Parquet integer) is
compared as its text, `category_text`'s way (7, not 7.0). A transaction given several labels
keeps the last one (the export lists verdicts in the order they were given).

A verdict is a person's decision about that transaction, so it overrides the label the table
already has for that row; the rows without a verdict keep theirs. A table without a label column
gets one, named `label`, holding the verdicts, and every row without a verdict is labelled 0
(normal): the label-aware mode reads a label on every row (0 or 1, nothing else), and aedetect
has always trained on unlabelled rows as normal ones (no label column: every row trains;
docs/history.md, "Unlabelled frauds among the training rows"). The frauds nobody reviewed are
then normal rows to the autoencoder and to the label-aware head alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from aedetect.data.io import check_input_file
from aedetect.data.schema import ColumnSpec, DatasetSchema
from aedetect.data.values import category_text, shown
from aedetect.errors import DataError

LABELS_ID = "transaction_id"  # the labels' id column, as `aedetect alerts export` writes it
LABEL = "label"  # the labels' 0/1 column, and the name of the label column a table without one gets
EXAMPLES = 5  # ids named in messages


def id_text(values) -> pd.Series:
    """Ids as text: text exactly as written, numbers as `category_text` writes them; None where
    missing or empty."""
    s = pd.Series(values).reset_index(drop=True)
    out = category_text(s)
    text = s.map(lambda v: isinstance(v, str), na_action="ignore").fillna(False).to_numpy(dtype=bool)
    out[text] = [v or None for v in s[text]]
    return out


def read_labels(path: str | os.PathLike) -> pd.DataFrame:
    """A labels CSV (`aedetect alerts export`), every cell read as its text, checked
    (`check_labels`)."""
    path = Path(path)
    check_input_file(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError) as exc:  # pandas' ParserError is a ValueError
        raise DataError(f"{path}: cannot read as CSV: {str(exc).splitlines()[0]}") from None
    return check_labels(df, str(path))


def check_labels(labels: pd.DataFrame, source: str = "the labels") -> pd.DataFrame:
    """`labels` as two columns: transaction_id (text) and label (int8, 1 fraud, 0 legit), one row
    per transaction (the last given). Refuses a missing column, an empty id, a label not 0 or 1."""
    missing = [c for c in (LABELS_ID, LABEL) if c not in labels.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {', '.join(map(repr, missing))}; labels have the "
                        f"columns {LABELS_ID!r} and {LABEL!r} (1 fraud, 0 legit), as `aedetect alerts "
                        "export` writes them")
    ids = id_text(labels[LABELS_ID])
    if ids.isna().any():
        i = int(np.flatnonzero(ids.isna().to_numpy())[0])
        raise DataError(f"{source}: column {LABELS_ID!r}, row {i + 1}: empty transaction id")
    raw = labels[LABEL].reset_index(drop=True)
    y = pd.to_numeric(raw, errors="coerce")
    ok = y.isin([0, 1]).to_numpy()
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise DataError(f"{source}: column {LABEL!r}, row {i + 1}: label must be 1 (fraud) or 0 (legit), "
                        f"got {shown(raw.iloc[i])!r} ({int((~ok).sum())} such row(s))")
    out = pd.DataFrame({LABELS_ID: ids.to_numpy(dtype=object), LABEL: y.to_numpy().astype("int8")})
    return out.drop_duplicates(LABELS_ID, keep="last").reset_index(drop=True)


def labels_id_column(df: pd.DataFrame, schema: DatasetSchema | None, id_column: str | None = None, *,
                     source: str = "the data", option: str = "--labels-id-column") -> str:
    """The data's id column for the join: `id_column` when given, else the column named
    transaction_id, else the schema's one id column."""
    if id_column is not None:
        if id_column not in df.columns:
            raise DataError(f"{source}: no column {id_column!r} ({option}); its columns are "
                            f"{', '.join(map(repr, map(str, df.columns)))}")
        return id_column
    if LABELS_ID in df.columns:
        return LABELS_ID
    ids = [c for c in (schema.ids if schema is not None else []) if c in df.columns]
    if len(ids) == 1:
        return ids[0]
    found = f"its id columns are {', '.join(map(repr, ids))}" if ids else "it has no id column"
    raise DataError(f"{source}: no column {LABELS_ID!r} to find the labelled transactions by, and {found}; "
                    f"name the data's transaction id column with {option} NAME")


def row_verdicts(df: pd.DataFrame, id_column: str, labels: pd.DataFrame) -> np.ndarray:
    """Per row of `df`: the label of its transaction id in `labels` (`check_labels`' columns),
    1.0 or 0.0, NaN where it has none."""
    lookup = pd.Series(labels[LABEL].to_numpy(dtype="float64"), index=labels[LABELS_ID].to_numpy())
    return id_text(df[id_column]).map(lookup).to_numpy(dtype="float64", na_value=np.nan)


@dataclass(frozen=True)
class LabelJoin:
    """A table with the verdicts joined (`join_labels`)."""

    data: pd.DataFrame  # the table, its label column holding the verdicts
    schema: DatasetSchema  # its schema: the given one, with a label column when it had none
    summary: dict  # what was joined (the model folder's metadata keeps it as "labels")

    @property
    def unmatched(self) -> int:
        """Labels whose transaction id is in no row of the table."""
        return self.summary["unmatched"]


def join_labels(df: pd.DataFrame, schema: DatasetSchema, labels: pd.DataFrame, *,
                id_column: str | None = None, source: str = "the labels", data_source: str = "the data",
                option: str = "--labels-id-column") -> LabelJoin:
    """Join `labels` (transaction_id, label: `read_labels`, `AlertStore.labels()`) to `df` by the
    data's id column (`labels_id_column`), into the schema's label column (a verdict overrides
    the table's label for its row) or, without one, a new column `label` (0 where no verdict:
    see the module docstring). Refuses labels of which no id is in the data."""
    labels = check_labels(labels, source)
    if not len(labels):
        raise DataError(f"{source}: no labels (no alert was decided fraud or legit)")
    col = labels_id_column(df, schema, id_column, source=data_source, option=option)
    ids = id_text(df[col])
    known = labels[LABELS_ID].isin(set(ids.dropna())).to_numpy()
    if not known.any():
        data_ids = ids.dropna().unique()[:EXAMPLES]
        raise DataError(f"{source}: none of its {len(labels):,} transaction ids is in column {col!r} of "
                        f"{data_source} (the labels' ids: {', '.join(map(repr, labels[LABELS_ID][:EXAMPLES]))}; "
                        f"the data's: {', '.join(map(repr, data_ids)) or 'none'}); ids compare as text "
                        f"exactly as written; name the data's id column with {option} NAME")
    target = schema.label or LABEL
    if schema.label is None and (LABEL in df.columns or LABEL in schema.names):
        raise DataError(f"{data_source}: it has no label column and a column {LABEL!r} that is not one; the "
                        f"verdicts would go into a new column {LABEL!r}: name the label column with "
                        "--label-column, or rename that column")
    v = row_verdicts(df, col, labels)
    has = ~np.isnan(v)
    out = df.copy()
    added = target not in df.columns
    if added:
        y = np.zeros(len(df), dtype="int8")
    else:
        y = pd.to_numeric(out[target], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        if not np.isin(y, (0, 1)).all():
            i = int(np.flatnonzero(~np.isin(y, (0, 1)))[0])
            raise DataError(f"{data_source}: column {target!r}, row {i + 1}: label must be 0 (normal) "
                            f"or 1 (anomaly), got {shown(df[target].iloc[i])!r}")
        y = y.astype("int8")
    changed = 0 if added else int((y[has] != v[has]).sum())
    y[has] = v[has].astype("int8")
    out[target] = y
    if schema.label is None:
        spec = ColumnSpec(name=LABEL, role="label", type="integer",
                          note="verdicts joined by transaction id; rows without one: 0")
        schema = DatasetSchema.model_validate({**schema.model_dump(), "columns": [*schema.columns, spec]})
    summary = {"source": source, "id_column": col, "label_column": target, "added_column": added,
               "labels": len(labels), "fraud_labels": int(labels[LABEL].sum()),
               "matched": int(known.sum()), "unmatched": int((~known).sum()),
               "unmatched_ids": labels[LABELS_ID][~known][:EXAMPLES].tolist(),
               "rows": int(has.sum()), "fraud_rows": int((v[has] == 1).sum()),
               "legit_rows": int((v[has] == 0).sum()), "changed_rows": changed,
               "rows_without_verdict": int((~has).sum())}
    return LabelJoin(out, schema, summary)
