import numpy as np
import pytest

from aedetect.evaluation.metrics import at_threshold, evaluate_scores, precision_at_recall, recall_at_precision

Y = np.array([0, 0, 0, 0, 0, 1, 0, 1, 1, 1])
S = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])


def test_at_threshold_by_hand():
    m = at_threshold(Y, S, 0.55)  # flags 0.6..1.0: tp 4, fp 1
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (4, 1, 0, 5)
    assert m["precision"] == pytest.approx(0.8) and m["recall"] == 1.0
    assert m["f1"] == pytest.approx(8 / 9)


def test_operating_points_by_hand():
    assert recall_at_precision(Y, S, 0.93) == pytest.approx(0.75)
    assert precision_at_recall(Y, S, 0.433) == pytest.approx(1.0)
    assert precision_at_recall(Y, S, 1.0) == pytest.approx(0.8)
    assert recall_at_precision(Y, -S, 0.93) == 0.0  # no cut is that precise


def test_evaluate_scores_keys_and_values():
    m = evaluate_scores(Y, S, threshold=0.55)
    assert m["roc_auc"] == pytest.approx(23 / 24)
    assert m["n_test"] == 10 and m["n_test_fraud"] == 4
    assert m["mean_mse_fraud"] == pytest.approx(0.825)
    assert m["at_guide_threshold"]["n_flagged"] == 0
    with pytest.raises(ValueError, match="needs both classes"):
        evaluate_scores(np.zeros(10), S, 0.5)
