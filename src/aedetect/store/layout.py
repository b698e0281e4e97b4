"""The preprocessed feature layout a manifest records: which features each input column gives.

A model's preprocessing is a list of blocks, one per input column (numeric, periodic, one-hot,
frequency), and every block names its output features the same way wherever they are read: by
the preprocessing that builds them, by the manifest check that refuses a folder whose names do
not follow from its blocks, and in the reasons a score gives. Plain data, no fitting here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from aedetect.data.schema import DAY, WEEK

UNSEEN = "(unseen)"
MISSING = "(missing)"
RARE = "(rare)"
_PERIOD_NAMES = {DAY: "hour", WEEK: "weekday"}


def numeric_blocks(feature_names: Sequence[str], log_columns: Iterable[str] = (),
                   periodic_columns: Iterable[tuple[str, float]] = ()) -> list[dict]:
    """The blocks of the numbers-only layout (the credit-card one, and folders saved before
    blocks were recorded): each column numeric (log1p or not) or periodic with one period."""
    log = set(log_columns)
    periodic = {c: float(p) for c, p in periodic_columns}
    return [{"column": c, "kind": "periodic", "periods": [periodic[c]], "datetime": False}
            if c in periodic else {"column": c, "kind": "numeric", "log": c in log}
            for c in feature_names]


def block_names(b: dict) -> list[str]:
    """The output feature names of one block, in order."""
    c, kind = b["column"], b["kind"]
    if kind == "numeric":
        names = [f"log1p({c})" if b.get("log") else c]
        return names + ([f"{c}:missing"] if b.get("indicator") else [])
    if kind == "periodic":
        if len(b["periods"]) == 1 and not b["datetime"] and b["periods"][0] == DAY:
            names = [f"{c}:sin", f"{c}:cos"]
        else:
            names = [f"{c}:{_PERIOD_NAMES.get(p, f'{p:g}s')}_{f}" for p in b["periods"]
                     for f in ("sin", "cos")]
        return names + ([f"{c}:missing"] if b.get("indicator") else [])
    if kind == "onehot":
        rare = [f"{c}={RARE}"] if b.get("rare") else []
        return [f"{c}={v}" for v in b["categories"]] + rare + [f"{c}={UNSEEN}"]
    if kind == "frequency":
        return [f"{c}:frequency", f"{c}={UNSEEN}"]
    raise RuntimeError(f"column {c!r} is not fitted yet")


def output_names(blocks: list[dict]) -> list[str]:
    return [n for b in blocks for n in block_names(b)]
