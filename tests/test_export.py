"""The SavedModel export scores like the Python path."""

from __future__ import annotations

import numpy as np
import pytest

from aedetect.data.generate import generate_transactions
from aedetect.errors import ArtifactError
from aedetect.export import export_savedmodel


def _mse_detector():
    from aedetect import AutoencoderDetector
    from aedetect.data.schema import CREDITCARD

    df = generate_transactions(3000, 0.0, seed=2)
    return AutoencoderDetector((16, 6, 16), epochs=2, score_type="mse", log_columns=CREDITCARD.log_columns,
                               periodic_columns=CREDITCARD.periodic_columns).fit(df[list(CREDITCARD.features)])


@pytest.mark.parametrize("kind", ["default", "mse"])
def test_savedmodel_equals_python_path(detector, tmp_path, kind):
    """Within 1e-5: absolute for the MSE score; relative for the Mahalanobis score, whose values
    reach the hundreds (the float32 network alone differs there by ~1e-6 relative)."""
    import tensorflow as tf

    if kind == "mse":
        detector = _mse_detector()
    path = export_savedmodel(detector, tmp_path / "export")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no temporary folder left
    df = generate_transactions(2000, 0.05, seed=11)
    X = df[detector.feature_names_in_]
    expected = detector.anomaly_score(X)
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    out = serve(**{c: tf.constant(X[c].to_numpy(np.float32)) for c in detector.feature_names_in_})
    if kind == "mse":
        np.testing.assert_allclose(out["score"].numpy(), expected, rtol=0, atol=1e-5)
    else:
        assert detector.score_type == "residual_mahalanobis"
        np.testing.assert_allclose(out["score"].numpy(), expected, rtol=1e-5, atol=1e-5)
    assert (out["flag"].numpy() == (expected > detector.threshold_)).all()
    assert out["flag"].numpy().sum() > 0  # the comparison covers flagged rows too
    with pytest.raises(ArtifactError, match="already exists"):
        export_savedmodel(detector, path)
