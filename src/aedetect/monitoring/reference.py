"""Drift monitoring: a reference profile stored with the model, and the statistics that compare
a batch of new rows against it.

The reference (`reference.json` in the model folder, hashed in the manifest) holds, for each
input column, what the monitoring statistics need, so the training data is not needed later:

- numeric columns: the counts of the reference rows in 10 quantile bins plus a missing bin
  (for the population stability index, PSI) and a seeded uniform sample of up to 2,000 values
  (for the two-sample Kolmogorov-Smirnov test, `scipy.stats.ks_2samp(sample, new_values)` with
  asymptotic p-values above 500 new values; the sample, not the reference rows, sets its power);
- categorical columns: the counts of up to 100 categories, an "other" count for the rest and
  a missing count (for the PSI and `scipy.stats.chi2_contingency` on reference vs new counts;
  a category the reference never saw lands in the "other" cell, where the reference has 0);
- the anomaly score of the validation normals, profiled like a numeric column;
- the flagged share promised at the stored threshold, `(1 - pi) * fpr + pi * tpr`, with fpr the
  share of validation normals flagged, tpr the share of labelled anomalies flagged (selection
  set) and pi the anomaly share of the training file; each with a Wilson interval at
  `level ** (1/3)`, so the three hold together with probability >= `level`.

A batch alarms when a column (or the score) moved both significantly (p-value after the
Benjamini-Hochberg correction across every test of the batch < alpha) and by a large amount
(PSI >= psi_alarm); or when the flagged share (or the anomaly share of labelled rows) is outside
its promised interval by a binomial test and by a ratio of at least `share_ratio`. The
Benjamini-Hochberg step keeps the chance of any false alarm on a batch drawn from the reference
distribution at most alpha (it controls the family-wise error when no column moved).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from aedetect.errors import ArtifactError, DataError
from aedetect.files import read_json_file
from aedetect.store.folder import REFERENCE_FILE


def _scipy_stats():
    """scipy.stats, imported on first use: the batch scorer imports this module for the
    flagged-share promise, and scipy would add tens of MB to every `aedetect score`."""
    from scipy import stats

    return stats


SAMPLE_SIZE = 2_000
N_BINS = 10
MAX_CATEGORIES = 100
PSI_FLOOR = 1e-4  # empty bins count as this share, so one empty bin does not make the PSI infinite
MAX_NAME_CHARS = 100  # a category name kept or shown longer than this is cut and hashed
MAX_NEW_NAMES = 10  # new categories named per column in a comparison (all are counted)
MIN_SETTLED_ROWS = 200  # a history column is profiled on its settled reference rows when there are this many


class DriftSettings(BaseModel):
    """When a batch alarms (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(0.01, gt=0, lt=1, description="level of the tests after Benjamini-Hochberg")
    psi_alarm: float = Field(0.2, ge=0, description="PSI a column or the score must reach to alarm")
    share_ratio: float = Field(1.5, ge=1, description="flagged share (or anomaly share) must be off "
                               "its promised interval by at least this ratio to alarm")


@dataclass
class Reference:
    """What new data is compared against; see the module docstring."""

    columns: dict[str, dict]
    score: dict
    threshold: float
    flagged: dict
    source: str = ""
    level: float = 0.95
    time_column: str | None = None  # a clock column (the ULB `Time`) drifts by construction: not tested
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Reference:
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


# -- profiles ---------------------------------------------------------------------------------

def input_names(det) -> list[str]:
    """The detector's input columns (x0, x1, ... when it was fitted on an array)."""
    names = getattr(det, "feature_names_in_", None)
    return [str(c) for c in names] if names is not None else [f"x{i}" for i in range(det.n_features_in_)]


def read_as_model(det, df: pd.DataFrame) -> pd.DataFrame:
    """`df`'s input columns as the model reads them (`Preprocessor.canonical`): booleans as 0/1,
    times as seconds, categories as their text, so profiles compare what the model scores."""
    pre = getattr(det, "preprocessor_", None)
    if pre is None or not hasattr(df, "columns"):
        return df
    out = pre.canonical(df)
    out.index = df.index
    return out


def column_kind(values: pd.Series) -> str:
    """'numeric' for numbers (not booleans), 'categorical' for anything else."""
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    return "numeric" if numeric else "categorical"


def _compact(values: np.ndarray) -> list[float]:
    return [float(f"{v:.7g}") for v in values]  # 7 significant digits keep the JSON small


def numeric_profile(values, *, bins: int = N_BINS, sample_size: int = SAMPLE_SIZE,
                    seed: int = 0) -> dict:
    v = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype="float64")
    missing = ~np.isfinite(v)
    x = v[~missing]
    if x.size == 0:
        raise ValueError("a numeric column needs at least one value to profile")
    edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1]))
    sample = np.random.default_rng(seed).choice(x, size=min(sample_size, x.size), replace=False)
    return {"kind": "numeric", "n": int(v.size), "edges": _compact(edges),
            "counts": [*numeric_counts(x, edges).tolist(), int(missing.sum())],
            "sample": _compact(np.sort(sample))}


def numeric_counts(x: np.ndarray, edges) -> np.ndarray:
    """Counts of finite `x` in the bins (-inf, e0), [e0, e1), ..., [ek, inf)."""
    idx = np.searchsorted(np.asarray(edges, dtype="float64"), x, side="right")
    return np.bincount(idx, minlength=len(edges) + 1)


def categorical_profile(values, *, max_categories: int = MAX_CATEGORIES) -> dict:
    s = pd.Series(values)
    missing = s.isna()
    counts = s[~missing].astype(str).value_counts()
    kept = counts.iloc[:max_categories]
    return {"kind": "categorical", "n": int(len(s)), "categories": [str(c) for c in kept.index],
            "counts": [*map(int, kept.to_numpy()), int(counts.iloc[max_categories:].sum()),
                       int(missing.sum())]}


def bounded_name(name: str, limit: int = MAX_NAME_CHARS) -> str:
    """`name` when it has at most `limit` characters; else its start, '…#' and 16 hex digits of
    its BLAKE2b hash (`limit` characters in all): distinct long names stay distinct, and a
    hostile megabyte-long category costs 100 characters wherever it is kept or echoed."""
    if len(name) <= limit:
        return name
    digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
    return f"{name[:limit - 18]}…#{digest}"


def categorical_counts(profile: dict, values) -> tuple[np.ndarray, list[str]]:
    """Counts of `values` in the profile's cells (categories..., other, missing), and the values
    that fell in "other" although the reference had no "other" rows: new categories."""
    s = pd.Series(values)
    missing = s.isna()
    counts = s[~missing].astype(str).value_counts()
    cats = profile["categories"]
    known = counts.reindex(cats, fill_value=0).to_numpy()
    other = counts.drop(index=[c for c in cats if c in counts.index])
    new = [str(c) for c in other.index] if profile["counts"][-2] == 0 else []
    return np.array([*known, int(other.sum()), int(missing.sum())]), new


def seconds(values) -> np.ndarray:
    """Datetimes (or seconds) as float64 seconds; NaN where missing or unreadable."""
    from aedetect.data.schema import as_seconds

    s = pd.Series(values).reset_index(drop=True)
    try:
        return as_seconds(s)
    except DataError:  # an unreadable value counts as missing here; scoring names it
        return as_seconds(pd.to_datetime(s, errors="coerce", format="mixed"))


def hour_of_day(values) -> np.ndarray:
    """Hour of day (0-24, fractional) of datetimes or seconds; NaN where missing or unreadable."""
    return np.mod(seconds(values), 86_400.0) / 3_600.0


def profile_column(values: pd.Series, *, seed: int = 0, sample_size: int = SAMPLE_SIZE,
                   kind: str | None = None) -> dict:
    """A column's profile, by `kind` ("numeric", "categorical", "datetime"; default: from the
    values). Datetimes are profiled by their hour of day, the part the model reads that a
    later window can share with the reference (the date cannot)."""
    kind = kind or column_kind(values)
    if kind == "datetime":
        return {**numeric_profile(hour_of_day(values), sample_size=sample_size, seed=seed),
                "transform": "hour_of_day"}
    if kind == "numeric":
        return numeric_profile(values, sample_size=sample_size, seed=seed)
    return categorical_profile(values)


def schema_kinds(det) -> dict[str, str]:
    """The kind of each feature of a dataset-schema model as the model reads it (a category
    stored as integers is still a category); empty for a numbers-only model."""
    schema = det.dataset_schema if getattr(det, "schema", None) is not None else None
    if schema is None:
        return {}
    return {c.name: "datetime" if c.type == "datetime" else "categorical" if c.type == "categorical"
            else "numeric" for c in schema.feature_columns}


def wilson(k: int, n: int, level: float) -> dict:
    """The share k/n with its Wilson score interval (scipy's binomtest)."""
    if n == 0:
        return {"k": 0, "n": 0, "value": None, "low": 0.0, "high": 1.0}
    ci = _scipy_stats().binomtest(int(k), int(n)).proportion_ci(level, method="wilson")
    return {"k": int(k), "n": int(n), "value": k / n, "low": float(ci.low), "high": float(ci.high)}


def flagged_promise(fp: int, n_normal: int, tp: int = 0, n_anomaly: int = 0,
                    anomalies: int = 0, rows: int = 0, level: float = 0.95) -> dict:
    """The flagged share expected on the stream, (1 - pi) * fpr + pi * tpr, with an interval
    that holds when the three Wilson intervals (each at level ** (1/3)) hold."""
    each = level ** (1 / 3)
    fpr, tpr, pi = wilson(fp, n_normal, each), wilson(tp, n_anomaly, each), wilson(anomalies, rows, each)
    if not rows:  # unlabelled reference: assume no anomalies in the stream
        pi = {**pi, "value": 0.0, "low": 0.0, "high": 0.0}

    def mix(p, f, t):
        return (1 - p) * f + p * t

    lows = [mix(p, fpr["low"], tpr["low"]) for p in (pi["low"], pi["high"])]
    highs = [mix(p, fpr["high"], tpr["high"]) for p in (pi["low"], pi["high"])]
    # Without labelled anomalies their recall is unknown (interval 0-1) and so is the point value.
    value = None if tpr["value"] is None and pi["value"] else mix(pi["value"], fpr["value"], tpr["value"] or 0.0)
    return {"value": value, "low": min(lows), "high": max(highs), "level": level, "fpr": fpr,
            "tpr": tpr, "anomaly_share": pi}


def build_reference(det, normals: pd.DataFrame, *, anomalies: pd.DataFrame | None = None,
                    anomaly_rows: tuple[int, int] = (0, 0), source: str = "", seed: int = 0,
                    sample_size: int = SAMPLE_SIZE, level: float = 0.95,
                    time_column: str | None = None, ages: np.ndarray | None = None) -> Reference:
    """Profile the model's input columns and score on `normals` (validation normals), and the
    flagged share at `det.threshold_` with `anomalies` (labelled anomalies, e.g. of the selection
    set) and `anomaly_rows` = (anomalies, rows) of the training file for the anomaly share.

    `ages`: for a model with entity history, each normal row's seconds of history (since the
    history began). A history column is profiled on the rows whose history is long enough for
    it (`aedetect.data.history.settle_seconds`): in its first weeks a log has only new pairs and
    short gaps, which no later row has. With fewer than `MIN_SETTLED_ROWS` such rows the column
    is profiled on every row and marked `young`: a comparison shows it and never alarms on it;
    the score likewise when any column is young."""
    names, kinds = input_names(det), schema_kinds(det)
    values = read_as_model(det, normals[names])
    settle = _settle(det, names, ages)
    # the autoencoder's columns (`read_as_model` reads them; a label-aware model's label-based
    # risk columns are not profiled)
    columns = {}
    for i, c in enumerate(names):
        if c not in values:
            continue
        settled = ages >= settle[c] if c in settle else None
        if settled is not None and settled.sum() >= MIN_SETTLED_ROWS:
            columns[c] = {**profile_column(values[c][settled], seed=seed + i, sample_size=sample_size,
                                           kind=kinds.get(c)),
                          "settled": {"needs_days": settle[c] / 86_400, "rows": int(settled.sum())}}
        else:
            columns[c] = profile_column(values[c], seed=seed + i, sample_size=sample_size, kind=kinds.get(c))
            if settled is not None:
                columns[c]["young"] = _young(settle[c], ages)
    scores = det.anomaly_score(normals[names])
    t = float(det.threshold_)
    tp = n_anom = 0
    if anomalies is not None and len(anomalies):
        tp, n_anom = int((det.anomaly_score(anomalies[names]) > t).sum()), len(anomalies)
    flagged = flagged_promise(int((scores > t).sum()), len(scores), tp, n_anom, *anomaly_rows,
                              level=level)
    score = numeric_profile(scores, sample_size=sample_size, seed=seed)
    if settle:  # the score reads every column: settled where every column is
        need = max(settle.values())
        settled = ages >= need
        if settled.sum() >= MIN_SETTLED_ROWS:
            score = {**numeric_profile(scores[settled], sample_size=sample_size, seed=seed),
                     "settled": {"needs_days": need / 86_400, "rows": int(settled.sum())}}
        else:
            score["young"] = _young(need, ages)
    return Reference(columns, score, t, flagged, source=source, level=level, time_column=time_column)


def _settle(det, names: list[str], ages: np.ndarray | None) -> dict[str, float]:
    """Seconds of history each of `names` needs (`settle_seconds`): its history columns', for a
    model with entity history and `ages`; else nothing."""
    schema = det.dataset_schema if getattr(det, "schema", None) is not None else None
    if ages is None or schema is None or schema.history is None:
        return {}
    from aedetect.data.history import settle_seconds

    return {c: need for c in names if (need := settle_seconds(c, schema.history)) is not None}


def _young(need: float, ages: np.ndarray) -> dict:
    oldest = float(np.nanmax(ages)) if np.isfinite(ages).any() else 0.0
    return {"needs_days": need / 86_400, "history_days": max(oldest, 0.0) / 86_400}


def young_columns(ref: Reference | None) -> tuple[list[str], float, float] | None:
    """The reference's young history columns (`build_reference`), the most history days any of
    them needs and the most its rows had; None when there is none."""
    young = {c: p["young"] for c, p in (ref.columns if ref is not None else {}).items() if p.get("young")}
    if not young:
        return None
    return (sorted(young), max(y["needs_days"] for y in young.values()),
            max(y["history_days"] for y in young.values()))


def history_ages(det, df: pd.DataFrame, start: float | None) -> np.ndarray | None:
    """Each row's seconds of entity history (its time less `start`, when the history began);
    None for a model without entity history or an unknown start."""
    schema = det.dataset_schema if getattr(det, "schema", None) is not None else None
    if start is None or schema is None or schema.history is None:
        return None
    from aedetect.data.history import table_inputs

    return table_inputs(df, schema)[0] - start


def training_reference(det, df: pd.DataFrame, split, schema, seed: int = 0,
                       history_start: float | None = None) -> Reference:
    """The reference of a model trained on `df` with `split`: columns and score from the
    validation normals, recall from the selection set's anomalies, anomaly share from `df`.
    `history_start`: when the rows' entity history began (`HistoryState.start`)."""
    normals = df.iloc[split.validation]
    anomalies, rows = None, (0, 0)
    if schema.label and schema.label in df.columns:
        sel = df.iloc[split.selection]
        anomalies = sel[sel[schema.label] == 1]
        rows = (int(df[schema.label].sum()), len(df))
    return build_reference(det, normals, anomalies=anomalies, anomaly_rows=rows, seed=seed,
                           time_column=schema.time, ages=history_ages(det, normals, history_start), source=(
        f"{len(normals):,} validation normals, {0 if anomalies is None else len(anomalies)} "
        f"selection-set anomalies, anomaly share of {rows[1]:,} training-file rows"))


def reference_from_frame(det, df: pd.DataFrame, label: str | None, *, source: str = "",
                         seed: int = 0, time_column: str | None = None) -> Reference:
    """A reference from a file of rows like the training data, for a model folder without one
    (or instead of its own): its normal rows (every row when it has no `label` column, or
    `label` is None), and its anomalies for recall. A model with entity history computes the
    file's history columns after its state, as scoring does."""
    from aedetect.data.history import add_history

    schema = det.dataset_schema if getattr(det, "schema", None) is not None else None
    ages = None
    if schema is not None and schema.history is not None:
        state = getattr(det, "history_state_", None)
        df = add_history(df, schema, state)[0]
        ages = history_ages(det, df, getattr(state, "start", None))
    names = input_names(det)
    missing = [c for c in names if c not in df.columns]
    if missing:
        raise DataError(f"{source or 'reference data'}: missing column(s) {missing} that the model takes")
    if label and label in df.columns:
        y = pd.to_numeric(df[label], errors="coerce").to_numpy()
        normals, anomalies, rows = df[y == 0], df[y == 1], (int((y == 1).sum()), len(df))
        ages = None if ages is None else ages[y == 0]
    else:
        normals, anomalies, rows = df, None, (0, 0)
    return build_reference(det, normals, anomalies=anomalies, anomaly_rows=rows, seed=seed, ages=ages,
                           time_column=time_column, source=f"{source} ({len(normals):,} normal rows)")


def load_reference(model_dir) -> Reference | None:
    """The verified reference of a model folder (a path or an opened `ModelFolder`); None when
    the folder has none."""
    from aedetect.store.folder import open_folder

    folder = open_folder(model_dir)  # checks every file's sha256, once
    if REFERENCE_FILE not in folder.manifest.files:
        return None
    path = folder.path / REFERENCE_FILE
    try:
        return Reference.from_dict(read_json_file(path, "reference profile"))
    except (ValueError, TypeError) as exc:
        raise ArtifactError(f"{path}: not a reference profile ({exc})") from None


# -- the flagged share against the promise: a one-line check at scoring and at training ------
SHARE_WARN_RATIO = 10.0  # a flagged share this many times the promise is warned about
MAX_DRIVERS = 3  # columns named as behind the flagged rows


def rule_share(threshold) -> float | None:
    """The share of rows a threshold rule flags by its own terms (normal_percentile: 1 - q/100 of
    normal rows; contamination: its share; max_fpr: its rate; alert_budget: alerts over rows per
    day); None for the rules that promise no share (fixed, best_f1, ...)."""
    p = threshold.params or {}
    share = {"normal_percentile": 1 - p.get("q", 100) / 100, "contamination": p.get("share"),
             "max_fpr": p.get("max_fpr")}.get(threshold.rule)
    if threshold.rule == "alert_budget" and p.get("rows_per_day"):
        share = p.get("alerts_per_day", 0) / p["rows_per_day"]
    return float(share) if share is not None and share > 0 else None


def promised_share(ref: Reference | None, threshold) -> dict | None:
    """The flagged share a model promises at `threshold` (a `Threshold` or a manifest's threshold
    section): its reference's (`Reference.flagged`: the value, or the top of its interval when
    the value is 0 or unknown), else the rule's own (`rule_share`); None when neither says."""
    if ref is not None and np.isclose(ref.threshold, threshold.value, rtol=1e-9, atol=0):
        value = ref.flagged.get("value") or ref.flagged.get("high")
        if value:
            return {"value": float(value), "low": ref.flagged.get("low"),
                    "high": ref.flagged.get("high"), "source": "the model's reference.json"}
    share = rule_share(threshold)
    if share is None:
        return None
    return {"value": share, "low": None, "high": None, "source": f"its {threshold.rule} rule",
            "normals_only": True}


def share_warning(flagged: int, rows: int, promise: dict | None,
                  drivers: dict[str, int] | None = None, where: str = "") -> str | None:
    """A warning when `flagged` of `rows` is over `SHARE_WARN_RATIO` times the promised share,
    naming the numbers and the columns behind most flagged rows (`drivers`: how many flagged
    rows each column tops); None when it is not, or when nothing was promised."""
    if promise is None or rows <= 0 or not promise["value"] > 0:
        return None
    share = flagged / rows
    if share <= SHARE_WARN_RATIO * promise["value"]:
        return None
    normals = " for normal rows" if promise.get("normals_only") else ""
    text = (f"{where}flagged {flagged:,} of {rows:,} rows ({share:.2%}), {share / promise['value']:,.0f} "
            f"times the {promise['value']:.3%} promised{normals} by {promise['source']}")
    top = sorted((drivers or {}).items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_DRIVERS]
    if top:
        text += "; the columns most often a flagged row's top reason: " + ", ".join(
            f"{c} ({n:,} rows)" for c, n in top)
    if promise.get("normals_only"):  # the rule promises a share of normal rows, not of frauds
        return text + (": either the data holds that many anomalies (the model folder has no "
                       "reference profile with their share), or these rows are not like the "
                       "training data (a later period, a new range of values, a column read "
                       "differently)")
    return text + (": these rows are not like the training data (a later period, a new range of "
                   "values, a column read differently), so the flags mean little")


# -- statistics -------------------------------------------------------------------------------

def psi(expected_counts, actual_counts) -> float:
    """Population stability index: sum of (a - e) * ln(a / e) over bins, shares floored at 1e-4."""
    e = np.asarray(expected_counts, dtype="float64")
    a = np.asarray(actual_counts, dtype="float64")
    e = np.maximum(e / max(e.sum(), 1), PSI_FLOOR)
    a = np.maximum(a / max(a.sum(), 1), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def column_drift(profile: dict, values) -> dict:
    """PSI and a two-sample test of new `values` against one column's profile."""
    ref = np.asarray(profile["counts"])
    if profile.get("transform") == "hour_of_day":
        values = hour_of_day(values)
    if profile["kind"] == "numeric":
        v = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype="float64")
        finite = np.isfinite(v)
        x = v[finite]
        counts = np.array([*numeric_counts(x, profile["edges"]), int((~finite).sum())])
        sample = np.asarray(profile["sample"])
        out = {"kind": "numeric", "psi": psi(ref, counts), "test": "ks", "n": int(v.size),
               "missing_share": float((~finite).mean()) if v.size else 0.0,
               "ref_missing_share": float(ref[-1] / max(ref.sum(), 1))}
        if x.size:
            # scipy's exact p-value costs O(n * m) here; above 500 new values the asymptotic
            # distribution is accurate to well under the alpha levels used
            ks = _scipy_stats().ks_2samp(sample, x, method="auto" if x.size <= 500 else "asymp")
            scale = float(np.subtract(*np.quantile(sample, [0.75, 0.25]))) or 1.0
            out.update(statistic=float(ks.statistic), p_value=float(ks.pvalue),
                       median_shift=float((np.median(x) - np.median(sample)) / scale))
        else:
            out.update(statistic=None, p_value=1.0, median_shift=None)
        return out
    counts, new = categorical_counts(profile, values)
    table = np.vstack([ref, counts])
    table = table[:, table.sum(axis=0) > 0]
    out = {"kind": "categorical", "psi": psi(ref, counts), "test": "chi2", "n": int(counts.sum()),
           "missing_share": float(counts[-1] / max(counts.sum(), 1)),
           "ref_missing_share": float(ref[-1] / max(ref.sum(), 1)), "new_category_count": len(new),
           "new_categories": [bounded_name(c) for c in new[:MAX_NEW_NAMES]]}
    if table.shape[1] > 1 and counts.sum():
        chi = _scipy_stats().chi2_contingency(table)
        out.update(statistic=float(chi.statistic), p_value=float(chi.pvalue))
    else:
        out.update(statistic=None, p_value=1.0)
    return out


def share_test(k: int, n: int, promise: dict) -> dict:
    """Binomial test of k flagged in n against the promised interval [low, high]: the p-value
    of the composite null "the share is in the interval", at the interval's nearer end."""
    share = k / n if n else None
    out = {"k": int(k), "n": int(n), "share": share, "expected": promise.get("value"),
           "low": promise["low"], "high": promise["high"], "p_value": 1.0, "ratio": None}
    if not n:
        return out
    if share > promise["high"]:
        out["p_value"] = float(_scipy_stats().binomtest(k, n, promise["high"], alternative="greater").pvalue)
        out["ratio"] = share / promise["high"] if promise["high"] > 0 else float("inf")
    elif share < promise["low"]:
        out["p_value"] = float(_scipy_stats().binomtest(k, n, promise["low"], alternative="less").pvalue)
        out["ratio"] = promise["low"] / share if share > 0 else float("inf")
    return out


def precision_recall(y, flags) -> dict:
    y, flags = np.asarray(y).astype(bool), np.asarray(flags, dtype=bool)
    tp, fp, fn = int((y & flags).sum()), int((~y & flags).sum()), int((y & ~flags).sum())
    return {"tp": tp, "fp": fp, "fn": fn, "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / (tp + fn) if tp + fn else None}


def compare_batch(ref: Reference, x: pd.DataFrame, scores, y=None,
                  settings: DriftSettings | None = None, *, skip: tuple[str, ...] = ()) -> dict:
    """Compare one batch (input columns `x`, their anomaly `scores`, optional 0/1 labels `y`)
    with the reference. Columns in `skip` (e.g. the time column a window is cut on) and the
    reference's `time_column` are left out, unless that column is profiled by hour of day (a
    datetime), which a batch of whole days shares with the reference."""
    settings = settings or DriftSettings()
    scores = np.asarray(scores, dtype="float64")
    if (ref.columns.get(ref.time_column) or {}).get("transform") != "hour_of_day":
        skip = (*skip, ref.time_column)
    columns = {c: column_drift(p, x[c]) for c, p in ref.columns.items() if c not in skip}
    score = column_drift(ref.score, scores)
    flagged = share_test(int((scores > ref.threshold).sum()), len(scores), ref.flagged)
    out = {"rows": int(len(x)), "columns": columns, "score": score, "flagged": flagged}
    tests = [*columns.values(), score, flagged]
    pi = ref.flagged.get("anomaly_share") or {}
    if y is not None and pi.get("n"):
        y = np.asarray(y).astype(int)
        out["labels"] = {**precision_recall(y, scores > ref.threshold),
                         "anomaly_share": share_test(int(y.sum()), len(y), pi)}
        tests.append(out["labels"]["anomaly_share"])
    elif y is not None:
        out["labels"] = precision_recall(np.asarray(y).astype(int), scores > ref.threshold)
    adjusted = _scipy_stats().false_discovery_control([t["p_value"] for t in tests], method="bh")
    for t, p in zip(tests, adjusted, strict=True):
        t["p_adjusted"] = float(p)
    for t in [*columns.values(), score]:
        t["alarm"] = bool(t["p_adjusted"] < settings.alpha and t["psi"] >= settings.psi_alarm)
    for t in tests[len(columns) + 1:]:
        t["alarm"] = bool(t["p_adjusted"] < settings.alpha and (t["ratio"] or 0) >= settings.share_ratio)
        if t["ratio"] == float("inf"):
            t["ratio"] = None  # the share moved from or to zero: no finite ratio (JSON has no inf)
    # a column (or the score) whose reference rows had too little history: shown, never alarms
    for t, profile in [*((columns[c], ref.columns[c]) for c in columns), (score, ref.score)]:
        if profile.get("young"):
            t["young"], t["alarm"] = profile["young"], False
    out["young_columns"] = sorted(c for c, t in columns.items() if t.get("young"))
    out["drifted_columns"] = sorted((c for c, t in columns.items() if t["alarm"]),
                                    key=lambda c: -columns[c]["psi"])
    out["alarm"] = bool(any(t["alarm"] for t in tests))
    out["correction"] = "benjamini-hochberg"
    return out
