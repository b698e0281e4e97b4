"""The TensorFlow-free runtime scores like the Keras path, and score/serve never import TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from aedetect.data.creditcard import CREDITCARD, LOG_COLUMNS, PERIODIC_COLUMNS
from aedetect.data.generate import generate_transactions
from aedetect.errors import ArtifactError, DataError
from aedetect.serving.runtime import KERAS_RTOL, WEIGHTS_FILE, load_scorer

FEATURES = list(CREDITCARD.features)


def max_relative_difference(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(got - expected) / np.abs(expected)))


def _assert_parity(scorer, detector, X):
    """Every row's score within KERAS_RTOL (the bound docs/serving.md states) of the Keras path's,
    flags identical.

    Both run the network in float64 from the same float32 weights. A float32 runtime was off by
    up to 1.3e-4 relative on well-reconstructed rows (the residual's cancellation), which this
    bound catches.
    """
    expected, expected_c = detector.score_with_contributions(X)
    got, got_c = scorer.score_with_contributions(X)
    assert max_relative_difference(got, expected) <= KERAS_RTOL
    np.testing.assert_allclose(got_c, expected_c, rtol=KERAS_RTOL, atol=1e-12 * np.abs(expected_c).max())
    assert (scorer.predict(X) == detector.predict(X)).all()
    assert scorer.threshold_ == detector.threshold_


def test_the_docs_state_the_tested_bound():
    """docs/serving.md states the runtime's bound against the Keras path as KERAS_RTOL."""
    from pathlib import Path

    docs = (Path(__file__).parents[1] / "docs" / "serving.md").read_text()
    assert f"within {KERAS_RTOL:.0e}".replace("e-0", "e-") + " relative on every row" in docs


@pytest.mark.parametrize("which", ["default", "guide"])
def test_runtime_equals_keras_path(model_dir, guide_model_dir, which):
    from aedetect.model.detector import load_detector

    path = model_dir if which == "default" else guide_model_dir
    scorer, detector = load_scorer(path), load_detector(path)
    X = generate_transactions(5000, 0.05, seed=11)[FEATURES]
    _assert_parity(scorer, detector, X)
    flags = scorer.predict(X)
    assert 0 < flags.sum() < len(X)  # the comparison covers flagged and unflagged rows
    assert scorer.feature_names_out_ == detector.feature_names_out_
    np.testing.assert_array_equal(scorer.anomaly_score(X.to_numpy()), scorer.anomaly_score(X))


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_an_ensembles_member_major_pass_equals_the_row_major_one(model_dir, activation):
    """An ensemble's contributions come from a member-major pass (`_stacked_contributions`); for
    every score kind and activation they equal those of the row-major `reconstruct` and
    `contributions` (the layout the Keras path shares) to 1e-12."""
    from aedetect.model.scores import SCORES, contributions, fit_stats

    scorer = load_scorer(model_dir)
    assert scorer.members_ == 3 and scorer._stacked is not None
    scorer.layers64 = [(k, b, activation if i < len(scorer.layers64) - 1 else a)
                       for i, (k, b, a) in enumerate(scorer.layers64)]
    scorer._stacked = [(k, b, activation if i < len(scorer._stacked) - 1 else a)
                       for i, (k, b, a) in enumerate(scorer._stacked)]
    x = scorer.preprocessor_.transform(generate_transactions(3000, 0.05, seed=4)[FEATURES])
    d = scorer.preprocessor_.n_features_out
    for kind in SCORES:
        scorer.score_type = kind
        scorer.score_stats_ = fit_stats(kind, scorer.residuals(x[:1500]), members=3)
        want = contributions(kind, scorer.score_stats_, scorer.residuals(x), d)
        got = scorer._contributions(x)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


def test_runtime_checks_its_input(model_dir):
    scorer = load_scorer(model_dir)
    X = generate_transactions(10, 0.0, seed=1)[FEATURES]
    with pytest.raises(DataError, match=r"missing column\(s\) \['Amount'\]"):
        scorer.anomaly_score(X.drop(columns="Amount"))
    bad = X.to_numpy()
    bad[3, 2] = np.inf
    with pytest.raises(DataError, match="column 'V2', row 4: value inf is not a finite number"):
        scorer.anomaly_score(bad)
    with pytest.raises(DataError, match=r"shape \(rows, 30\)"):
        scorer.anomaly_score(bad[:, :5])


def test_tampered_or_old_weights_are_refused(model_dir, tmp_path):
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    with open(copy / WEIGHTS_FILE, "ab") as f:
        f.write(b"x")
    with pytest.raises(ArtifactError, match="weights.npz: sha256"):
        load_scorer(copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["files"][WEIGHTS_FILE]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="lists no weights.npz"):
        load_scorer(copy)


def test_score_and_serve_never_import_tensorflow(model_dir, tmp_path):
    """`aedetect score` and the service in a fresh process where the training stack cannot be
    imported, as in a scoring-only install (`pip install aedetect`, no `train` extra)."""
    data = tmp_path / "in.csv"
    generate_transactions(300, 0.05, seed=3).to_csv(data, index=False)
    code = textwrap.dedent(f"""
        import sys
        for name in ("tensorflow", "keras", "matplotlib", "h5py"):
            sys.modules[name] = None  # any import of them raises ImportError
        from aedetect.cli.app import app
        app(["score", "--model", {str(model_dir)!r}, "--data", {str(data)!r},
             "--out", {str(tmp_path / "out.csv")!r}], standalone_mode=False)
        from fastapi.testclient import TestClient
        from aedetect.serving.app import create_app
        client = TestClient(create_app({str(model_dir)!r}))
        assert client.get("/healthz").status_code == 200
        tx = {{c: 0.5 for c in {FEATURES!r}}}
        r = client.post("/v1/score", json={{"transactions": [tx]}})
        assert r.status_code == 200, r.text
        print("scored", r.json()["results"][0]["score"])
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1].startswith("scored ")
    assert (tmp_path / "out.csv").stat().st_size > 0


@pytest.mark.slow
def test_runtime_equals_keras_path_on_real_data(tmp_path):
    """The real ULB file, all 284,807 rows, through a model trained on it briefly."""
    from aedetect import AutoencoderDetector
    from aedetect.data.fetch import fetch_creditcard
    from aedetect.data.io import read_table
    from aedetect.model.detector import load_detector

    df = read_table(fetch_creditcard())
    X = df[FEATURES]
    det = AutoencoderDetector(epochs=2, log_columns=LOG_COLUMNS,
                              periodic_columns=PERIODIC_COLUMNS)
    det.fit(X[df["Class"] == 0].iloc[:60_000])
    path = det.save(tmp_path / "m")
    _assert_parity(load_scorer(path), load_detector(path), X)
