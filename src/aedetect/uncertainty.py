"""How sure are we? Bootstrap intervals for precision and recall at a threshold, and warnings
when a labelled set is too small (or too unlike the stream) to support a rule.

At a fixed threshold, the class-stratified bootstrap has a closed form: resampling the n1
anomalies with replacement, the number caught is Binomial(n1, recall); resampling the n0
normals, the number flagged is Binomial(n0, fpr). Drawing those two numbers gives exactly the
bootstrap distribution, without materialising resampled index arrays (cheap on 34,000 rows).
The interval covers sampling noise of the labelled rows only, not the choice of the threshold.
"""

from __future__ import annotations

import numpy as np

MIN_ANOMALIES = 30  # below this, recall moves by more than 3 points per anomaly


def bootstrap_precision_recall(y, scores, threshold: float, *, n_boot: int = 2000,
                               level: float = 0.95, seed: int = 0) -> dict:
    """Precision and recall of `scores > threshold`, each with a percentile bootstrap interval.

    Returns {"precision": {"value", "low", "high"}, "recall": {...}, "n_anomalies", "n_normals",
    "level", "n_boot"}. Precision is None (no interval) when no row is flagged.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level!r}")
    y, scores = np.asarray(y).astype(int), np.asarray(scores, dtype="float64")
    if y.shape != scores.shape:
        raise ValueError(f"labels and scores differ in shape: {y.shape} vs {scores.shape}")
    flags = scores > threshold
    n1, n0 = int((y == 1).sum()), int((y == 0).sum())
    tp, fp = int((flags & (y == 1)).sum()), int((flags & (y == 0)).sum())
    rng = np.random.default_rng(seed)
    tp_b = rng.binomial(n1, tp / n1, size=n_boot) if n1 else np.zeros(n_boot, int)
    fp_b = rng.binomial(n0, fp / n0, size=n_boot) if n0 else np.zeros(n_boot, int)
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2

    def interval(value, samples):
        if value is None or samples.size == 0:
            return {"value": value, "low": None, "high": None}
        low, high = np.percentile(samples, [lo, hi])
        return {"value": float(value), "low": float(low), "high": float(high)}

    flagged_b = tp_b + fp_b
    prec_b = tp_b[flagged_b > 0] / flagged_b[flagged_b > 0]
    return {
        "precision": interval(tp / (tp + fp) if tp + fp else None, prec_b),
        "recall": interval(tp / n1 if n1 else None, tp_b / n1 if n1 else np.array([])),
        "n_anomalies": n1, "n_normals": n0, "n_flagged": tp + fp,
        "level": level, "n_boot": n_boot,
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
