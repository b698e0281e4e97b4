"""How sure are we? Exact binomial intervals for precision and recall at a threshold, and
warnings when a labelled set is too small (or too unlike the stream) to support a rule.

At a fixed threshold, recall is tp successes out of n1 anomalies and precision tp out of the
n_flagged rows, so each has a closed-form confidence interval: the exact Clopper-Pearson
interval (scipy's `binomtest(...).proportion_ci(method="exact")`). Unlike a bootstrap, it does
not collapse at small counts: 5 of 5 anomalies caught gives recall 1.0 with the interval
0.478-1.0, not 1.0-1.0. The interval covers sampling noise of the labelled rows only, not the
choice of the threshold.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest

MIN_ANOMALIES = 30  # below this, recall moves by more than 3 points per anomaly


def proportion_interval(k: int, n: int, level: float = 0.95) -> dict:
    """{"value", "low", "high"} of k successes in n trials (exact Clopper-Pearson); all None
    when n is 0."""
    if n == 0:
        return {"value": None, "low": None, "high": None}
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return {"value": k / n, "low": float(ci.low), "high": float(ci.high)}


def precision_recall_intervals(y, scores, threshold: float, *, level: float = 0.95) -> dict:
    """Precision and recall of `scores > threshold`, each with an exact binomial interval.

    Returns {"precision": {"value", "low", "high"}, "recall": {...}, "n_anomalies", "n_normals",
    "n_flagged", "level", "method"}. Precision is None (no interval) when no row is flagged.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level!r}")
    y, scores = np.asarray(y).astype(int), np.asarray(scores, dtype="float64")
    if y.shape != scores.shape:
        raise ValueError(f"labels and scores differ in shape: {y.shape} vs {scores.shape}")
    flags = scores > threshold
    n1, n0 = int((y == 1).sum()), int((y == 0).sum())
    tp, fp = int((flags & (y == 1)).sum()), int((flags & (y == 0)).sum())
    return {
        "precision": proportion_interval(tp, tp + fp, level),
        "recall": proportion_interval(tp, n1, level),
        "n_anomalies": n1, "n_normals": n0, "n_flagged": tp + fp,
        "level": level, "method": "clopper-pearson",
    }


def small_sample_warnings(rule: str, params: dict, y, *, stream_anomaly_share: float | None = None,
                          n_flagged: int | None = None) -> list[str]:
    """Plain-language reasons why a threshold chosen (or checked) on labelled rows `y` is shaky."""
    y = np.asarray(y).astype(int)
    n1, n0 = int((y == 1).sum()), int((y == 0).sum())
    out = []
    if 0 < n1 < MIN_ANOMALIES:
        out.append(
            f"the labelled set holds only {n1} anomalies: each one moves recall by "
            f"{100 / n1:.1f} points, so recall there is known only roughly (see the interval) and "
            f"a rule tuned on it may land far from its target on new data; collect at least "
            f"{MIN_ANOMALIES} labelled anomalies before trusting it")
    if rule == "min_precision" and n_flagged is not None and 0 < n_flagged:
        target = float(params.get("min_precision", 0.93))
        if n_flagged < 1 / (1 - target + 1e-12):
            out.append(
                f"only {n_flagged} rows are flagged: with so few alerts precision can only take "
                f"steps of {100 / n_flagged:.0f} points, too coarse to tell {target:.2f} from 1.0")
    if rule == "max_fpr":
        allowed = float(params.get("max_fpr", 0.0)) * n0
        if allowed < 1:
            out.append(
                f"{n0} normal rows at a false-positive rate of {params.get('max_fpr')} allow "
                f"{allowed:.2g} false positives: the rule cannot tell that rate from zero here")
    if stream_anomaly_share is not None and n1 + n0 > 0:
        share = n1 / (n1 + n0)
        how = "overstates" if share > stream_anomaly_share else "understates"
        if share > 3 * stream_anomaly_share or share < stream_anomaly_share / 3:
            out.append(
                f"the labelled set holds {100 * share:.2f}% anomalies against "
                f"{100 * stream_anomaly_share:.2f}% in the data: precision measured there does "
                f"not carry over to the stream (it {how} it)")
    return out
