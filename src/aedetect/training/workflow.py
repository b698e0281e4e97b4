"""Library functions behind the CLI: load data, split, train, choose a threshold, evaluate.

Every command of the CLI is a thin wrapper over one of these, so each is callable from Python.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from aedetect.data.history import add_history
from aedetect.data.io import frame_fingerprint
from aedetect.data.schema import DatasetSchema, as_dataset_schema, has_labels  # noqa: F401 (re-exported)
from aedetect.data.splits import TEST_SHARE, Split, split_table
from aedetect.errors import AedetectError, DataError
from aedetect.evaluation.metrics import evaluate_detector  # noqa: F401  (the evaluation's home)
from aedetect.model.detector import AutoencoderDetector
from aedetect.model.thresholds import choose_threshold, get_rule, rows_per_day
from aedetect.model.uncertainty import precision_recall_intervals, small_sample_warnings
from aedetect.monitoring.reference import promised_share, share_warning, training_reference
from aedetect.training.config import TrainConfig

# What a warm start may change; the rest of the parent's parameters define its network and score.
WARM_START_PARAMS = ("epochs", "learning_rate", "patience", "batch_size", "verbose")


@dataclass
class TrainResult:
    detector: AutoencoderDetector  # a HybridDetector wrapping one with config.use_labels
    split: Split
    config: TrainConfig
    data_fingerprint: str
    table: pd.DataFrame | None = None  # the data as trained on: with its entity history columns
    warnings: list[str] = field(default_factory=list)  # about the data (a gap before its history)
    head_seconds: float | None = None  # with use_labels: the label-aware head's fit and threshold


def split_frame(df: pd.DataFrame, config: TrainConfig, schema: DatasetSchema) -> Split:
    """The configured split (`aedetect.data.splits.split_table` with the config's protocol, seed
    and test share)."""
    return split_table(df, schema, config.protocol, config.seed, config.test_share)


def new_detector(config: TrainConfig, schema: DatasetSchema, verbose: int = 0):
    return AutoencoderDetector(schema=schema, verbose=verbose, **config.detector_params())


# The fewest normal rows a split may leave to train on and to validate with (early stopping,
# the score statistics and the label-free threshold, a high percentile of validation scores).
MIN_TRAIN_ROWS = 50
MIN_VALIDATION_ROWS = 10


def check_split(df: pd.DataFrame, split: Split, config: TrainConfig, schema: DatasetSchema,
                source: str = "the data") -> None:
    """Refuse, before training, a split that leaves too few normal rows to train and validate
    on, and a label-aware setting the data cannot serve (no label column, no anomaly in the
    selection set that a labelled threshold rule chooses on), saying what is missing and how
    many rows there are."""
    ds = as_dataset_schema(schema)
    rule = get_rule(config.threshold_rule)
    labelled = split.protocol != "unlabelled"
    counts = f"{len(df):,} rows"
    if labelled:
        y = df[ds.label].to_numpy()
        n_anomalies, n_normal = int((y == 1).sum()), int((y == 0).sum())
        counts += f" ({n_normal:,} labelled normal, {n_anomalies:,} anomalies in column {ds.label!r})"
        if n_normal == 0:
            raise AedetectError(f"{source}: {counts}; no row is labelled normal (0), and training "
                                "learns from normal rows")
    elif config.use_labels or rule.needs_labels:
        what = "use_labels (--use-labels)" if config.use_labels else f"the {rule.name} threshold rule"
        raise AedetectError(f"{source}: {what} needs labels, and the schema has no label column; "
                            "pass --label-column NAME (a column holding only 0 and 1) or train "
                            "label-free")
    if len(split.train) < MIN_TRAIN_ROWS or len(split.validation) < MIN_VALIDATION_ROWS:
        raise AedetectError(f"{source}: {counts}; training needs at least {MIN_TRAIN_ROWS} normal rows "
                            f"to train on and {MIN_VALIDATION_ROWS} to validate with after the "
                            f"{split.protocol} split; it leaves {len(split.train)} and "
                            f"{len(split.validation)}")
    if labelled and rule.needs_labels:
        y_sel = y[split.selection]
        if not ((y_sel == 1).any() and (y_sel == 0).any()):
            raise AedetectError(
                f"{source}: {counts}; the {rule.name} threshold rule chooses on the selection set, "
                f"which the {split.protocol} split leaves {int((y_sel == 1).sum())} anomalies and "
                f"{int((y_sel == 0).sum())} normals; it needs both (the guide split keeps 480 of "
                "every 492 anomalies for the test set): use a label-free rule such as "
                "normal_percentile, or more labelled anomalies")


def train_detector(
    df: pd.DataFrame,
    config: TrainConfig,
    schema: DatasetSchema | None = None,
    *,
    callbacks=(),
    work_dir: str | os.PathLike | None = None,
    warm_start: AutoencoderDetector | None = None,
    source: str = "the data",
    history_state=None,
    history_source: str = "the history state",
    test_elsewhere: str | None = None,
) -> TrainResult:
    """Split `df`, train on the training normals, then apply the configured threshold rule.

    With `input_pipeline="tfrecord"` the training and validation normals are first written as
    TFRecord shards under `work_dir` and training streams from them. With `warm_start` (a
    fitted detector), training continues from it (see `AutoencoderDetector.fit`): its network
    and preprocessing are kept; `config` gives the seed, the threshold rule and, when given, the
    `WARM_START_PARAMS`. `schema` describes `df` (e.g. `aedetect.data.creditcard.CREDITCARD`,
    or `aedetect.data.infer.infer_schema(df)`); with `warm_start`, the parent's by default.
    `source` names `df` in errors (`check_split`, before any training). `history_state`: the
    entity history before `df` (a `HistoryState`, `history_source` naming it); without it, after
    a warm start the parent's when it computes the same history, else none (the history starts
    with `df`). `test_elsewhere`: the name of the table the model is tested on instead of a part
    of `df` (`train --test-data`, which trains with `test_share` 0), recorded in `split_`.
    """
    if schema is None and warm_start is not None:
        schema = warm_start.dataset_schema
    if schema is None:
        raise ValueError("train_detector needs the table's schema (a DatasetSchema)")
    absent = [c.name for c in schema.columns if c.role != "excluded" and c.name not in df.columns]
    if absent:  # a schema written for other data: say so before a model is written
        raise DataError(f"the schema names column(s) {', '.join(map(repr, absent))} that the data "
                        f"does not have; its columns are {', '.join(map(repr, map(str, df.columns)))}")
    fingerprint = frame_fingerprint(df)  # of the table as read: `evaluate` finds its test rows by it
    schema = with_label_risk(schema, config)
    # Each row's entity history, strictly from the past: after a warm start, continuing from the
    # parent's (a newer file's first weeks are not young history then)
    parent = history_state if history_state is not None else _parent_history(warm_start, schema)
    continues_from = history_source if history_state is not None else "the parent model's training data"
    warnings = []
    t = None
    if schema.history is not None:  # the rows' times, read once for the gap and the warm-up
        from aedetect.data.history import gap_warning, state_times, table_inputs

        t = table_inputs(df, schema)[0]
        first = float(np.nanmin(t)) if np.isfinite(t).any() else float("nan")
        gap = gap_warning(state_times(parent), first, schema, source=source, continues_from=continues_from,
                          advice="Train on a file that follows that history, or without it")
        warnings += [gap] if gap else []
    df, history = add_history(df, schema, parent)
    warmup = None if t is None else history_warmup(t, history, config.history_warmup_days)
    every = df  # every row, the warm-up's too: the label-aware head learns from all of them
    if warmup is not None:  # the first days' rows: history only (for the autoencoder and the split)
        df = df[warmup["keep"]]
    split = split_frame(df, config, schema)
    check_split(df, split, config, schema, source)
    features = list(schema.features)
    if warm_start is not None:
        given = {k: v for k, v in config.detector.items() if k in WARM_START_PARAMS}
        det = warm_start.set_params(**given, seed=config.seed)
        det.fit(df.iloc[split.train][features], validation_data=df.iloc[split.validation][features],
                callbacks=callbacks, warm_start=True)
    elif config.input_pipeline == "tfrecord":
        det = new_detector(config, schema)
        if not det.new_preprocessor().numbers_only:
            raise AedetectError("the tfrecord input pipeline takes numeric columns only; this "
                                "data has categorical or datetime columns (use the memory pipeline)")
        from aedetect.data.tfdata import read_tfrecords

        if work_dir is None:
            raise ValueError("the tfrecord input pipeline needs a work_dir for its shards")
        shard_dir = write_split_tfrecords(df, split, work_dir, schema)
        det.fit(read_tfrecords(shard_dir, "train", seed=config.seed),
                validation_data=read_tfrecords(shard_dir, "validation", seed=None),
                callbacks=callbacks, feature_names=features)
    else:
        det = new_detector(config, schema)
        det.fit(df.iloc[split.train][features], validation_data=df.iloc[split.validation][features],
                callbacks=callbacks)
    det.threshold = select_threshold(det, df, split, config, schema)
    det.reference_ = training_reference(det, df, split, schema, seed=config.seed,
                                        history_start=getattr(history, "start", None))  # drift monitoring
    det.history_state_ = history  # scoring later data continues from the end of this one
    # What `evaluate_model(..., rows="test")` needs to find the test rows again.
    det.split_ = {"protocol": split.protocol, "seed": config.seed, "data_fingerprint": fingerprint,
                  "sizes": split.sizes(),
                  **({"test_data": str(test_elsewhere)} if test_elsewhere is not None else {}),
                  **({"test_share": config.test_share} if config.test_share != TEST_SHARE else {}),
                  **({"history_warmup_s": warmup["seconds"], "history_warmup_rows": warmup["rows"]}
                     if warmup is not None else {})}
    if config.use_labels:  # the same rule again, on the hybrid's fraud probability
        from aedetect.model.hybrid import fit_hybrid

        # The head learns from the warm-up's rows too: their labels are real (leaving them out of
        # the label-aware mode altogether cost it 0.836 -> 0.735 PR-AUC on a generated log's first
        # seed, 1-day label delay). The split's parts are the same rows, as positions in every row.
        head_start = time.perf_counter()
        hdf, hsplit = df, split
        if warmup is not None:
            kept = np.flatnonzero(warmup["keep"])
            hdf = every
            parts = ("train", "validation", "selection", "test")
            hsplit = replace(split, **{p: kept[getattr(split, p)] for p in parts})
        det = fit_hybrid(det, hdf, hsplit, schema, min_anomalies=config.min_anomalies, seed=config.seed)
        det.threshold = select_threshold(det, hdf, hsplit, config, schema)
        # The drift reference again, on what the hybrid scores (a fraud probability) and its
        # threshold: kept with the autoencoder's state, which the hybrid's folder saves.
        det.detector.reference_ = training_reference(det, hdf, hsplit, schema, seed=config.seed,
                                                     history_start=getattr(history, "start", None))
        head_seconds = time.perf_counter() - head_start
    young = young_reference_warning(getattr(det, "detector", det).reference_)
    warnings += [young] if young else []
    if split.protocol == "time" and len(split.selection):  # a stretch of the stream, as scored later
        warning = flagged_share_warning(det, df.iloc[split.selection], schema, "the selection window")
        if warning is not None:
            det.threshold = replace(det.threshold, warnings=[*det.threshold.warnings, warning])
    return TrainResult(det, split, config, fingerprint, df, warnings,
                       head_seconds if config.use_labels else None)


def young_reference_warning(reference) -> str | None:
    """Set when the drift reference's rows had too little entity history for some columns
    (`aedetect.monitoring.reference.build_reference`): `monitor` shows those and never alarms on
    them, nor on the score."""
    from aedetect.monitoring.reference import young_columns

    found = young_columns(reference)
    if found is None:
        return None
    young, need, had = found
    return (f"the validation rows have at most {had:.1f} days of entity history; {len(young)} history column(s) "
            f"need up to {need:g} days before their values settle, so `aedetect monitor` shows their drift "
            "(and the score's) without alarming on it; train on a longer log to have them judged "
            "(docs/monitoring.md)")


def history_warmup(t: np.ndarray, state, days: float) -> dict | None:
    """The rows (times `t`, their history computed from `state`'s start on) to train on: those
    at least `days` days (at most half of their span) after the history began, and rows without
    a time. None when nothing is left out: `days` 0, or every row old enough (a history carried
    from before them)."""
    if not days or state is None or state.start is None:
        return None
    from aedetect.data.history import settled_rows

    finite = t[np.isfinite(t)]
    if not len(finite):
        return None
    seconds = min(days * 86_400.0, (finite.max() - finite.min()) / 2)
    keep = settled_rows(t, state.start, seconds)
    if keep.all():
        return None
    return {"keep": keep, "seconds": float(seconds), "rows": int((~keep).sum())}


def _parent_history(warm_start, schema: DatasetSchema):
    """The parent's entity history state when `schema` computes the same history (entities,
    windows, hours and label-based risk); else None: the history starts with the data."""
    state = getattr(warm_start, "history_state_", None) if warm_start is not None else None
    parent = getattr(warm_start, "dataset_schema", None) if state is not None else None
    if state is None or parent is None or parent.history is None or schema.history is None:
        return None
    same = parent.history.model_dump() == schema.history.model_dump()
    return state if same else None


def with_label_risk(schema: DatasetSchema, config: TrainConfig) -> DatasetSchema:
    """`schema` with label-based risk in its history (`HistorySpec.label_delay`) for the
    label-aware mode: with `use_labels`, entity history, a label column and `label_delay_days`,
    unless the schema sets its own delay."""
    h = schema.history
    if not (config.use_labels and h is not None and h.label_delay is None and schema.label is not None
            and config.label_delay_days is not None):
        return schema
    history = {**h.model_dump(), "label_delay": config.label_delay_days * 86_400.0}
    return DatasetSchema.model_validate({**schema.model_dump(), "history": history})


def flagged_share_warning(det, rows: pd.DataFrame, schema: DatasetSchema, where: str) -> str | None:
    """`share_warning` for `rows` (a stretch of the stream: the time protocol's selection window,
    a test file): set when the share `det` flags there is over 10 times the one it promises
    (`promised_share`), naming the columns most often the top reason of a flagged row."""
    promise = promised_share(getattr(det, "reference_", None), det.threshold)
    if promise is None or not len(rows):
        return None
    x = rows[list(det.feature_names_in_)]  # a label-aware model's: with the label-based risk
    flags = det.anomaly_score(x) > det.threshold_
    drivers: dict[str, int] = {}
    if flags.any():
        ae = getattr(det, "detector", det)  # the autoencoder, also under a hybrid: its reasons
        _, contrib = ae.score_with_contributions(x[flags])
        names, per_column = ae.preprocessor_.column_contributions(contrib)
        tops, counts = np.unique(np.asarray(names)[per_column.argmax(axis=1)], return_counts=True)
        drivers = dict(zip(tops.tolist(), counts.tolist(), strict=True))
    return share_warning(int(flags.sum()), len(rows), promise, drivers, where=f"{where}: ")


def write_split_tfrecords(df, split: Split, out_dir, schema: DatasetSchema) -> Path:
    """Write each part of a split as TFRecord shards (raw columns, labels) plus meta.json."""
    from aedetect.data.tfdata import write_meta, write_tfrecords

    features = list(schema.features)
    label = as_dataset_schema(schema).label
    for name in ("train", "validation", "selection", "test"):
        rows = df.iloc[getattr(split, name)]
        y = rows[label].to_numpy() if label in rows else np.zeros(len(rows), "int8")
        write_tfrecords(rows[features].to_numpy(), out_dir, name, y=y)
    write_meta(out_dir, {"feature_names": features, "label": schema.label,
                         "protocol": split.protocol, "seed": split.seed, "sizes": split.sizes()})
    return Path(out_dir)


def stream_sample(split: Split) -> tuple[np.ndarray, str]:
    """Rows that stand for the unlabelled stream, for label-free rules that count alerts.

    Time protocol: the selection window (every row of a stretch of time). Guide protocol: the
    validation normals, since its selection set is enriched to 5% anomalies.
    """
    if split.protocol == "time":
        return split.selection, "selection window"
    return split.validation, "validation normals"


# Rule.data of the rules that look at no rows after fit(): normal_percentile's validation normals
# are fit()'s own, fixed looks at none. The only rules that need no split (a folder of shards).
RULES_WITHOUT_ROWS = ("normal", "none")


def _rule_params(rule, config: TrainConfig) -> dict:
    """The rule's parameters as the configuration sets them (None: the rule's default)."""
    return {p: config.param(field) for p, field in rule.config.items()}


def _stream_params(rule, params: dict, ds: DatasetSchema, df) -> dict:
    """A stream rule's parameters; the alert budget also needs the rows per day of `df`."""
    if rule.name != "alert_budget":
        return params
    if not ds.time:
        raise AedetectError("the alert_budget rule needs a time column to count days")
    return {**params, "rows_per_day": rows_per_day(ds.time_seconds(df))}


def threshold_from_fit(det, config: TrainConfig):
    """The threshold of a rule in `RULES_WITHOUT_ROWS` (fit()'s for normal_percentile, the given
    value for fixed); None for the rules that look at the stream or at labels."""
    rule = get_rule(config.threshold_rule)
    if rule.data == "normal":
        return det.threshold
    if rule.data == "none":
        return choose_threshold(rule.name, **_rule_params(rule, config))
    return None


def select_threshold(det, df, split: Split, config: TrainConfig, schema: DatasetSchema | None = None):
    """Apply the configured rule (`aedetect.model.thresholds.RULES`): label-free rules see validation
    normals (or the selection window of the time protocol), labelled rules see only the
    selection set, never the test set.

    The result carries precision and recall on the selection set with exact binomial
    intervals, and warnings when that set is too small to support the rule. `schema`: the
    model's own by default.
    """
    rule = get_rule(config.threshold_rule)
    schema = schema if schema is not None else det.dataset_schema
    features = list(det.feature_names_in_)  # a label-aware model's: with the label-based risk
    ds = as_dataset_schema(schema)
    if split.protocol == "unlabelled" or not len(split.selection):  # no labelled rows to look at
        return _label_free_threshold(det, df, split, config, ds)
    sel = df.iloc[split.selection]
    y_sel = sel[ds.label].to_numpy()
    sel_scores = det.anomaly_score(sel[features])
    sel_source = f"selection set ({int(y_sel.sum())} anomalies, {int((y_sel == 0).sum())} normals)"
    params = _rule_params(rule, config)
    t = threshold_from_fit(det, config)
    if t is None and rule.data == "stream":
        rows, name = stream_sample(split)
        scores = sel_scores if rows is split.selection else det.anomaly_score(df.iloc[rows][features])
        t = choose_threshold(rule.name, scores=scores, source=f"{name} ({len(rows)} rows)",
                             **_stream_params(rule, params, ds, df))
    elif t is None:
        if rule.name == "expected_cost" and config.cost_per_amount:
            if config.amount_column not in sel:
                raise AedetectError(f"cost_per_amount multiplies cost_missed by the column "
                                    f"{config.amount_column!r} (setting amount_column), which the "
                                    "data does not have; set amount_column to its amount column")
            params["amounts"] = sel[config.amount_column].to_numpy()
        t = choose_threshold(rule.name, scores=sel_scores, y=y_sel, source=sel_source, **params)
    if not ((y_sel == 1).any() and (y_sel == 0).any()):
        return t
    estimate = precision_recall_intervals(y_sel, sel_scores, t.value)
    estimate["rows"] = sel_source
    warnings = small_sample_warnings(t.rule, t.params, y_sel, n_flagged=estimate["n_flagged"],
                                     stream_anomaly_share=float(df[ds.label].mean()))
    return replace(t, estimate=estimate, warnings=warnings)


def _label_free_threshold(det, df, split: Split, config: TrainConfig, ds: DatasetSchema):
    """With no labels: the label-free rules, on the validation rows."""
    rule = get_rule(config.threshold_rule)
    params = _rule_params(rule, config)
    t = threshold_from_fit(det, config)
    if t is not None:
        return t
    if rule.data != "stream":
        raise AedetectError(f"the {rule.name} threshold rule needs labels, and the data has no "
                            "label column; use a label-free rule or pass --label-column")
    params = _stream_params(rule, params, ds, df)
    rows = split.validation
    scores = det.anomaly_score(df.iloc[rows][list(det.feature_names_in_)])
    return choose_threshold(rule.name, scores=scores, source=f"validation rows ({len(rows)} rows)",
                            **params)
