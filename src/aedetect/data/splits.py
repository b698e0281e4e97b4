"""Reproducible splits. Training and validation hold normal rows only; no anomaly is trained on.

auto:   the default: `time` when the table has a time column (a model meets later rows than it
        trained on, and an evaluation should too), else `guide`. `aedetect demo` names `guide`.

guide:  the guide's protocol. On the real data (492 frauds, 284,315 normals): a test set of
        34,000 rows holding 480 frauds; a labelled selection set of the other 12 frauds plus
        228 normals (5% frauds) for choosing thresholds; 10% of the remaining normals for
        validation (early stopping, label-free thresholds); the rest, normals only, trains.
        On other data the same shares are used (480/492 of the anomalies go to test, ...).
time:   ordered by time: the normals of the earliest 70% of rows train, less a seeded random 10%
        of them held out as validation normals; the next 10% of rows are the labelled selection
        set; the last 20% test. Validation normals come from the training period rather than
        from a later window, so the score statistics and the label-free threshold they give
        describe normal traffic of every hour, not one stretch of a day.
no label: every row trains, less a seeded random 10% held out as validation (early stopping, the
        label-free threshold); there is no selection or test set, so nothing is evaluated.
        Without labels the training rows may hold anomalies: the autoencoder then learns them,
        which lowers their scores, and even a share under a percent can do serious harm: on a
        third-party simulated card-payments log, 0.95% unlabelled frauds among the training
        rows cut the test PR-AUC from 0.39 to 0.13. Label what you can, or remove known frauds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GUIDE_TEST_FRAUD_SHARE = 480 / 492
GUIDE_TEST_NORMAL_SHARE = 33_520 / 284_315
GUIDE_SELECTION_FRAUD_RATE = 0.05
PROTOCOLS = ("guide", "time", "auto")


@dataclass(frozen=True)
class Split:
    """Row indices (into the frame that was split) of each part."""

    protocol: str
    seed: int
    train: np.ndarray
    validation: np.ndarray
    selection: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {k: len(getattr(self, k)) for k in ("train", "validation", "selection", "test")}


def guide_split(
    y: np.ndarray, seed: int = 0, validation_fraction: float = 0.1
) -> Split:
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    fraud = rng.permutation(np.flatnonzero(y == 1))
    normal = rng.permutation(np.flatnonzero(y == 0))
    n_test_fraud = int(round(len(fraud) * GUIDE_TEST_FRAUD_SHARE))
    n_test_normal = int(round(len(normal) * GUIDE_TEST_NORMAL_SHARE))
    sel_fraud = fraud[n_test_fraud:]
    # Selection set: the leftover anomalies at a 5% share (228 normals for the guide's 12).
    n_sel_normal = int(round(len(sel_fraud) * (1 - GUIDE_SELECTION_FRAUD_RATE)
                             / GUIDE_SELECTION_FRAUD_RATE))
    rest = normal[n_test_normal + n_sel_normal:]
    n_val = int(round(len(rest) * validation_fraction))
    return Split(
        protocol="guide",
        seed=seed,
        test=np.sort(np.concatenate([fraud[:n_test_fraud], normal[:n_test_normal]])),
        selection=np.sort(np.concatenate([sel_fraud,
                                          normal[n_test_normal:n_test_normal + n_sel_normal]])),
        validation=np.sort(rest[:n_val]),
        train=np.sort(rest[n_val:]),
    )


def time_split(
    time: np.ndarray, y: np.ndarray, seed: int = 0,
    train_share: float = 0.7, selection_share: float = 0.1, validation_fraction: float = 0.1,
) -> Split:
    """Earlier rows train, later rows test; `seed` picks the validation normals and orders ties."""
    time, y = np.asarray(time), np.asarray(y)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(time)), time))
    n = len(order)
    a, b = round(n * train_share), round(n * (train_share + selection_share))
    early, middle, late = order[:a], order[a:b], order[b:]
    normals = rng.permutation(early[y[early] == 0])
    n_val = round(len(normals) * validation_fraction)
    return Split(
        protocol="time",
        seed=seed,
        train=np.sort(normals[n_val:]),
        validation=np.sort(normals[:n_val]),
        selection=np.sort(middle),
        test=np.sort(late),
    )


def unlabelled_split(n_rows: int, seed: int = 0, validation_fraction: float = 0.1) -> Split:
    """No labels: all rows train, less a seeded random share held out for validation."""
    order = np.random.default_rng(seed).permutation(n_rows)
    n_val = max(1, int(round(n_rows * validation_fraction)))
    empty = np.array([], dtype=np.int64)
    return Split(protocol="unlabelled", seed=seed, train=np.sort(order[n_val:]),
                 validation=np.sort(order[:n_val]), selection=empty, test=empty)


SPLIT_WORDS = {"guide": "a random split stratified by the label", "time": "the latest 20% of rows by time",
               "all rows": "every row"}


def describe_split(protocol: str) -> str:
    """Which rows a split's test set holds, in words for any table ('guide' names the credit-card
    guide's shares, which mean nothing on another table)."""
    return SPLIT_WORDS.get(protocol, f"the {protocol} split")


def resolve_protocol(protocol: str, has_time: bool) -> str:
    """The protocol `auto` stands for: `time` with a time column, else `guide`."""
    if protocol == "auto":
        return "time" if has_time else "guide"
    return protocol


TEST_SHARE = 0.2  # the time protocol's test window: the latest 20% of rows
SELECTION_SHARE = 0.1  # then the 10% before it choose the threshold


def make_split(protocol: str, y: np.ndarray, time: np.ndarray | None = None, seed: int = 0,
               test_share: float = TEST_SHARE) -> Split:
    """The protocol's split. The time protocol tests on the latest `test_share` of rows, chooses
    on the 10% before them and trains on the rest; `test_share=0` leaves no test window (the
    test rows are another table, or the labels are on the latest rows only). The guide
    protocol's shares are the guide's, test set included, whatever `test_share`."""
    protocol = resolve_protocol(protocol, time is not None)
    if protocol == "guide":
        return guide_split(y, seed)
    if protocol == "time":
        if time is None:
            raise ValueError("the time protocol needs a time column")
        # rounded: 0.7 exactly for the default, so the row counts stay those of earlier models
        return time_split(time, y, seed, train_share=round(1 - SELECTION_SHARE - test_share, 10),
                          selection_share=SELECTION_SHARE)
    raise ValueError(f"protocol must be one of {PROTOCOLS}; got {protocol!r}")


def split_table(df, schema, protocol: str, seed: int, test_share: float = TEST_SHARE) -> Split:
    """The split of a table under its schema; without a label column, every row trains
    (`unlabelled_split`). `test_share`: see `make_split`."""
    from aedetect.data.schema import as_dataset_schema, has_labels

    ds = as_dataset_schema(schema)
    if not has_labels(df, ds):
        return unlabelled_split(len(df), seed)
    time = ds.time_seconds(df) if ds.time else None
    return make_split(protocol, df[ds.label].to_numpy(), time, seed, test_share)
