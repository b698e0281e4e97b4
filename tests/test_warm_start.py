"""train --warm-start: continue from a model on newer normals, keeping its preprocessing and network."""

from __future__ import annotations

import numpy as np
import pytest

from aedetect.data.creditcard import CREDITCARD
from aedetect.data.generate import generate_transactions
from aedetect.model.detector import load_detector
from aedetect.monitoring.compare import compare_models
from aedetect.training.config import TrainConfig
from aedetect.training.workflow import train_detector

FEATURES = list(CREDITCARD.features)


def _shifted(n, seed):
    df = generate_transactions(n, 0.02, seed=seed)
    df["V3"] += 1.5 * df["V3"].std()
    return df


def test_warm_start_keeps_shape_and_preprocessing_and_refits_the_threshold(model_dir, detector):
    base = load_detector(model_dir)  # a copy: the session's detector stays the parent
    weights = [w.copy() for w in base.model_.get_weights()]
    new = _shifted(3000, 31)
    config = TrainConfig(epochs=2, batch_size=256, seed=1)
    res = train_detector(new, config, warm_start=base)
    det = res.detector
    assert det is base and det.hidden_units_ == detector.hidden_units_
    assert det.preprocessor_.to_config() == detector.preprocessor_.to_config()
    assert any(not np.allclose(a, b) for a, b in zip(weights, det.model_.get_weights(), strict=True))
    assert det.n_train_ == len(res.split.train) and det.threshold_ != detector.threshold_
    assert det.reference_.score["n"] == len(res.split.validation)

    recent = _shifted(2000, 32)
    rows = compare_models({"before": (detector, None), "after": (det, det.reference_)},
                          recent[FEATURES], recent["Class"])
    before, after = rows
    assert after["flagged_share"] < before["flagged_share"]  # the old threshold over-flags shifted rows
    assert after["promise"][0] <= after["flagged_share"] <= 1.5 * after["promise"][1]


def test_warm_start_needs_a_fitted_detector_and_rows_in_memory(detector):
    import tensorflow as tf
    from sklearn.exceptions import NotFittedError

    from aedetect import AutoencoderDetector

    with pytest.raises(NotFittedError, match="not fitted"):
        AutoencoderDetector().fit(np.zeros((10, 3)), warm_start=True)
    rows = tf.data.Dataset.from_tensor_slices(np.zeros((10, len(FEATURES))))
    with pytest.raises(ValueError, match="rows in memory"):
        detector.fit(rows, validation_data=rows, warm_start=True)
