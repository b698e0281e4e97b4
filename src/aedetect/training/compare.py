"""The autoencoder beside scikit-learn baselines on the same split and the same preprocessing,
repeated over seeds: mean and standard deviation of every test-set metric.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from aedetect.data.schema import DatasetSchema
from aedetect.data.splits import resolve_protocol
from aedetect.evaluation.baselines import BASELINES, LOFScorer
from aedetect.evaluation.metrics import GUIDE_PRECISION, at_alert_budget, evaluate_detector, recall_at_precision
from aedetect.evaluation.report import Report, evaluation_report, fmt
from aedetect.model.preprocessing import Preprocessor
from aedetect.model.thresholds import rows_per_day
from aedetect.training.config import TrainConfig
from aedetect.training.workflow import train_detector

AUTOENCODER = "autoencoder"
LABEL_AWARE = "label-aware"  # with use_labels: the autoencoder and its supervised head (`train --use-labels`)
METRICS = {"pr_auc": "PR-AUC", "roc_auc": "ROC-AUC", "recall_at_precision_0_93": "recall at precision 0.93",
           "alert_precision": "precision of the daily alerts", "fit_seconds": "fit s",
           "score_seconds": "score s"}


@dataclass
class Comparison:
    protocol: str
    seeds: list[int]
    alerts_per_day: float
    notes: dict[str, str] = field(default_factory=dict)  # method -> how it was run
    uses_labels: dict[str, bool] = field(default_factory=dict)
    runs: list[dict] = field(default_factory=list)  # one {method: metrics} per seed
    curves: dict = field(default_factory=dict)  # method -> (y, scores) of the first seed
    first: dict = field(default_factory=dict)  # the autoencoder's first-seed report inputs

    def summary(self) -> dict:
        """method -> metric -> {"mean", "std"} (std is None for a single seed)."""
        out = {}
        for method in self.runs[0]:
            out[method] = {}
            for key in METRICS:
                v = np.array([run[method][key] for run in self.runs], dtype="float64")
                out[method][key] = {"mean": float(v.mean()),
                                    "std": float(v.std(ddof=1)) if len(v) > 1 else None}
        return out

    def to_dict(self) -> dict:
        return {"protocol": self.protocol, "seeds": self.seeds, "alerts_per_day": self.alerts_per_day,
                "notes": self.notes, "uses_labels": self.uses_labels, "summary": self.summary(),
                "runs": self.runs, "autoencoder_first_seed": self.first.get("metrics", {})}


def _metrics(y, scores, fit_s: float, score_s: float, alerts_per_day: float, per_day: float) -> dict:
    return {"pr_auc": float(average_precision_score(y, scores)), "roc_auc": float(roc_auc_score(y, scores)),
            "recall_at_precision_0_93": recall_at_precision(y, scores, GUIDE_PRECISION),
            "alert_precision": (at_alert_budget(y, scores, alerts_per_day, per_day)["precision"]
                                if per_day is not None else float("nan")),
            "fit_seconds": fit_s, "score_seconds": score_s}


def compare_methods(df: pd.DataFrame, config: TrainConfig, seeds: int = 1, *, schema: DatasetSchema,
                    alerts_per_day: float = 50.0, lof_max_train: int = 20_000, baselines=BASELINES,
                    progress=None) -> Comparison:
    """Train the autoencoder and every baseline for seeds config.seed .. config.seed + seeds - 1.

    With `config.use_labels`, the label-aware mode too, as `train --use-labels` builds it on the
    same autoencoder: its row's fit seconds are the autoencoder's plus the head's.

    Any labelled table: with entity history, every method reads the rows as the autoencoder
    trained on them (`TrainResult.table`: the history features, less the warm-up's first days),
    so the baselines see the same features and the same split. Without a time column the
    precision of the daily alerts is not computed (NaN)."""
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1; got {seeds!r}")
    features = list(schema.features)
    per_day = rows_per_day(schema.time_seconds(df)) if schema.time else None
    result = Comparison(resolve_protocol(config.protocol, bool(schema.time)),
                        [config.seed + i for i in range(seeds)], alerts_per_day)
    say = progress or (lambda text: None)
    for i, seed in enumerate(result.seeds):
        cfg = config.model_copy(update={"seed": seed})
        say(f"seed {seed}: autoencoder" + (" and the label-aware head" if cfg.use_labels else ""))
        start = time.perf_counter()
        trained = train_detector(df, cfg, schema)
        fit_s = time.perf_counter() - start
        det, split, table = trained.detector, trained.split, trained.table  # the rows as trained on
        hybrid = None
        if cfg.use_labels:  # the autoencoder's row is the hybrid's own autoencoder
            hybrid, det = det, det.detector
            fit_s -= trained.head_seconds
        test = table.iloc[split.test]
        y = test[schema.label].to_numpy().astype(int)
        start = time.perf_counter()
        if i == 0:  # one network pass gives the metrics and the report's inputs
            ev = evaluate_detector(det, table, split.test, schema, alerts_per_day=alerts_per_day,
                                   seed=seed, full=True)
            scores = ev.scores
        else:
            scores = det.anomaly_score(test[features])
        score_s = time.perf_counter() - start
        run = {AUTOENCODER: _metrics(y, scores, fit_s, score_s, alerts_per_day, per_day)}
        result.notes[AUTOENCODER] = (f"{det.network_}, {det.n_epochs_} epochs "
                                     f"(at most {det.epochs_})")
        result.uses_labels[AUTOENCODER] = False
        if hybrid is not None:
            start = time.perf_counter()
            h_scores = hybrid.anomaly_score(test[list(hybrid.feature_names_in_)])
            h_score_s = time.perf_counter() - start
            run[LABEL_AWARE] = _metrics(y, h_scores, fit_s + trained.head_seconds, h_score_s, alerts_per_day,
                                        per_day)
            result.notes[LABEL_AWARE] = label_aware_note(hybrid)
            result.uses_labels[LABEL_AWARE] = True
            if i == 0:
                result.curves[LABEL_AWARE] = (y, h_scores)
        if i == 0:
            ev.metrics["protocol"] = split.protocol
            result.first = {"detector": det, "y": y, "scores": scores, "metrics": ev.metrics,
                            "feature_errors": ev.errors}
            result.curves[AUTOENCODER] = (y, scores)
        pre = Preprocessor.from_schema(schema)
        pre.fit(table.iloc[split.train][features].to_numpy())
        x_test = pre.transform(test[features].to_numpy())
        for b in baselines:
            say(f"seed {seed}: {b.name}")
            model = b.factory(seed=seed, max_train=lof_max_train) if b.factory is LOFScorer else b.factory(seed=seed)
            start = time.perf_counter()
            if b.uses_labels:
                outside = np.setdiff1d(np.arange(len(table)), split.test)
                model.fit(pre.transform(table.iloc[outside][features].to_numpy()),
                          table.iloc[outside][schema.label].to_numpy().astype(int))
            else:
                model.fit(pre.transform(table.iloc[split.train][features].to_numpy()))
            b_fit = time.perf_counter() - start
            start = time.perf_counter()
            b_scores = model.score_samples(x_test)
            b_score = time.perf_counter() - start
            run[b.name] = _metrics(y, b_scores, b_fit, b_score, alerts_per_day, per_day)
            result.notes[b.name] = model.note + (f" ({model.n_labelled_anomalies_} labelled anomalies)"
                                                 if b.uses_labels else "")
            result.uses_labels[b.name] = b.uses_labels
            if i == 0:
                result.curves[b.name] = (y, b_scores)
        result.runs.append(run)
    return result


def label_aware_note(hybrid) -> str:
    """How the label-aware row was run, in one line."""
    if hybrid.head_ is None:
        return f"no supervised head, the autoencoder alone: {hybrid.fallback_}"
    blend = ("the head alone" if hybrid.blend_ is None or hybrid.blend_["head_weight"] == 1
             else f"head weight {hybrid.blend_['head_weight']:.2f}")
    warmup = (hybrid.detector.split_ or {}).get("history_warmup_rows")
    rows = f"{hybrid.n_anomalies_:,} labelled anomalies" + (
        f", the history warm-up's {warmup:,} rows included, as `train --use-labels` learns" if warmup else "")
    return (f"the autoencoder + a gradient-boosted head on {' + '.join(hybrid.features_)} ({rows}), "
            f"{blend}, calibrated on {hybrid.n_calibration_:,} later rows")


def _cell(s: dict, key: str) -> str:
    if s["mean"] != s["mean"]:  # not computed (a daily budget needs a time column)
        return "-"
    digits = 1 if key.endswith("seconds") else 3
    text = f"{s['mean']:.{digits}f}"
    return text if s["std"] is None else f"{text} ± {s['std']:.{digits}f}"


def table_rows(cmp: Comparison, notes: bool = True) -> list[list[str]]:
    summary = cmp.summary()
    return [[name + (" (uses labels)" if cmp.uses_labels[name] else ""),
             *(_cell(summary[name][k], k) for k in METRICS), *([cmp.notes[name]] if notes else [])]
            for name in summary]


def markdown_table(cmp: Comparison) -> str:
    header = ["method", *METRICS.values(), "how it was run"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(cmp)]
    return "\n".join(lines) + "\n"


def comparison_report(cmp: Comparison, title: str = "aedetect: autoencoder and baselines") -> Report:
    """The comparison table and overlaid curves, then the autoencoder's own first-seed report."""
    first = cmp.first
    rep = evaluation_report(first["detector"], first["y"], first["scores"], first["feature_errors"],
                            first["metrics"], title)
    blocks, images = rep.blocks, rep.images
    rep.blocks, rep.images = [], {}
    n = len(cmp.seeds)
    rep.heading("Side by side", test_only=True)
    rep.para(f"{cmp.protocol} protocol; {n} seed{'s' if n > 1 else ''} ({', '.join(map(str, cmp.seeds))}): "
             f"{'mean ± standard deviation over seeds' if n > 1 else 'one seed, no spread'}. Every method "
             "sees the same split and the same preprocessing (fitted on the training normals). "
             f"Daily alerts: the top-scored test rows a budget of {fmt(cmp.alerts_per_day)} alerts a day "
             "allows for the test rows' share of the stream. The supervised row uses labels and is a ceiling, "
             "not a competitor"
             + ("; the label-aware row is the autoencoder with a supervised head on the labelled rows "
                "outside the test rows (`train --use-labels`)." if LABEL_AWARE in cmp.uses_labels else "."))
    rep.table(["method", *METRICS.values()], table_rows(cmp, notes=False))
    rep.table(["method", "how it was run"], [[name, note] for name, note in cmp.notes.items()],
              "text")
    from aedetect.evaluation import plots

    rep.figure("compare_pr", plots.pr_curves(cmp.curves), f"Precision-recall of every method (seed {cmp.seeds[0]}).")
    rep.figure("compare_roc", plots.roc_curves(cmp.curves), f"ROC of every method (seed {cmp.seeds[0]}).")
    rep.heading(f"The autoencoder in detail (seed {cmp.seeds[0]})")
    rep.blocks += blocks
    rep.images.update(images)
    return rep
