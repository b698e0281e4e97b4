"""Several models on the same rows: each one's flagged share against its own promise, score and
column drift against its own reference, and precision, recall and PR-AUC where labels are
known. A warm-started model is set beside its parent this way (`aedetect.training.run`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from aedetect.monitoring.reference import compare_batch, input_names, precision_recall


def compare_models(models: dict, x: pd.DataFrame, y=None, skip: tuple[str, ...] = ()) -> list[dict]:
    """Each model of `models` ({name: (detector, reference or None)}) on the same rows `x`:
    flagged share against its own promise, score drift, columns drifted, precision, recall and
    PR-AUC when labels `y` are given; columns in `skip` (a clock column) are not tested. Used to
    set a warm-started model beside its parent."""
    from sklearn.metrics import average_precision_score

    out = []
    for name, (det, ref) in models.items():
        scores = det.anomaly_score(x[input_names(det)])
        row = {"model": name, "rows": int(len(x)), "threshold": float(det.threshold_),
               "flagged_share": float((scores > det.threshold_).mean())}
        if ref is not None:
            res = compare_batch(ref, x, scores, y, skip=skip)
            row.update(promise=[res["flagged"]["low"], res["flagged"]["high"]],
                       score_psi=res["score"]["psi"], columns_drifted=res["drifted_columns"],
                       alarm=res["alarm"])
        if y is not None:
            y = np.asarray(y).astype(int)
            pr = precision_recall(y, scores > det.threshold_)
            row.update(precision=pr["precision"], recall=pr["recall"], anomalies=int(y.sum()),
                       pr_auc=float(average_precision_score(y, scores)) if 0 < y.sum() < len(y) else None)
        out.append(row)
    return out
