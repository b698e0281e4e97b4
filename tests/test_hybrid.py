"""Label-aware mode: the supervised head on the autoencoder's residual features (generated data)."""

import json
import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from aedetect.data.creditcard import CREDITCARD
from aedetect.data.generate import generate_transactions
from aedetect.errors import ArtifactError
from aedetect.model.hybrid import FEATURE_GROUPS, HEAD_FILE, HYBRID_FILE, HybridDetector, label_rows, load_model
from aedetect.training.config import TrainConfig
from aedetect.training.workflow import split_frame

FEATURES = list(CREDITCARD.features)
SMALL = {"epochs": 4, "batch_size": 256}


@pytest.fixture(scope="module")
def data():
    """12,000 generated transactions over two days, 2% anomalies: about 170 labelled frauds in
    the training period, 24 in the selection window, 48 in the test window."""
    return generate_transactions(12_000, fraud_rate=0.02, seed=5)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """`aedetect train --use-labels` (in-process), recording the hybrid and the rows its fit() saw."""
    from typer.testing import CliRunner

    from aedetect.cli.app import app

    work = tmp_path_factory.mktemp("hybrid")
    csv, model = work / "gen.csv", work / "model"
    data.to_csv(csv, index=False)
    seen = {}
    fit = HybridDetector.fit

    def spy(self, X, y, X_calibration=None, y_calibration=None):
        seen["fit"], seen["calibration"] = np.asarray(X.index), np.asarray(X_calibration.index)
        seen["hybrid"] = self
        return fit(self, X, y, X_calibration, y_calibration)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(HybridDetector, "fit", spy)
        res = CliRunner().invoke(app, [
            "train", "--data", str(csv), "--out", str(model), "--protocol", "time", "--use-labels",
            "--threshold-rule", "min_precision", "--epochs", str(SMALL["epochs"]), "--hidden-units", "16,6,16",
            "--set", f"batch_size={SMALL['batch_size']}"])
    assert res.exit_code == 0, res.output
    split = split_frame(data, TrainConfig(protocol="time", seed=0), CREDITCARD)
    return {"csv": csv, "model": model, "output": res.output, "hybrid": seen.pop("hybrid"), "seen": seen,
            "split": split}


def test_hybrid_beats_the_autoencoder_and_the_supervised_model(data, trained):
    hybrid, split = trained["hybrid"], trained["split"]
    assert "supervised head" in trained["output"]
    assert hybrid.fallback_ is None and hybrid.n_anomalies_ >= 100
    test = data.iloc[split.test]
    y = test["Class"].to_numpy()
    p = hybrid.anomaly_score(test[FEATURES])
    assert ((p >= 0) & (p <= 1)).all()
    ae = average_precision_score(y, hybrid.detector.anomaly_score(test[FEATURES]))
    raw_only = HybridDetector(hybrid.detector, features=("raw",), seed=0)
    fit, cal = label_rows(split, len(data))
    raw_only.fit(data.iloc[fit][FEATURES], data["Class"].to_numpy()[fit])
    supervised = average_precision_score(y, raw_only.anomaly_score(test[FEATURES]))
    hyb = average_precision_score(y, p)
    # Quality floor on generated data (measured: 0.97 against 0.94 and 0.84): the residual
    # features add to both parts alone.
    assert hyb > max(ae, supervised) and hyb >= 0.9, (hyb, ae, supervised)
    # Chosen on the calibration rows (selection window), where they also help.
    sel = hybrid.selection_
    assert sel["chosen"] == "all" and sel["all"] > sel["raw"] and hybrid.features_ == FEATURE_GROUPS
    # The threshold rules work on the probability: min_precision, chosen on the selection window.
    assert hybrid.threshold.rule == "min_precision" and 0 < hybrid.threshold_ < 1
    assert "selection set" in hybrid.threshold.source


def test_no_test_row_is_used(data, trained):
    seen, split = trained["seen"], trained["split"]
    test = set(data.index[split.test])
    assert not test & set(seen["fit"]) and not test & set(seen["calibration"])
    assert set(seen["calibration"]) == set(data.index[split.selection])
    # The head learns from the training period only: every row before the selection window.
    assert data["Time"].to_numpy()[seen["fit"]].max() <= data["Time"].to_numpy()[split.selection].min()
    assert data["Class"].to_numpy()[seen["fit"]].sum() == trained["hybrid"].n_anomalies_


def test_too_few_labels_fall_back_to_the_autoencoder(data, trained):
    det = trained["hybrid"].detector
    fit = np.flatnonzero(data["Class"].to_numpy() == 0)[:3000]
    frauds = np.flatnonzero(data["Class"].to_numpy() == 1)[:19]
    rows = np.concatenate([fit, frauds])
    hybrid = HybridDetector(det).fit(data.iloc[rows][FEATURES], data["Class"].to_numpy()[rows])
    assert hybrid.head_ is None and "19 labelled anomalies" in hybrid.fallback_
    x = data.iloc[:500][FEATURES]
    np.testing.assert_array_equal(hybrid.anomaly_score(x), det.anomaly_score(x))
    assert hybrid.threshold == det.threshold
    with pytest.raises(RuntimeError, match="no supervised head"):
        hybrid.predict_proba(x)


def test_save_load_round_trip_without_pickle(data, trained, tmp_path, monkeypatch):
    import shutil

    hybrid = trained["hybrid"]
    path = shutil.copytree(trained["model"], tmp_path / "model")
    assert {HYBRID_FILE, HEAD_FILE, "manifest.json", "model.keras"} <= {p.name for p in path.iterdir()}

    def refuse(*args, **kwargs):
        raise AssertionError("a pickle was loaded")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    same = load_model(path)
    assert isinstance(same, HybridDetector)
    x = data.iloc[:2000][FEATURES]
    np.testing.assert_allclose(same.anomaly_score(x), hybrid.anomaly_score(x), rtol=1e-6, atol=1e-9)
    assert same.threshold == hybrid.threshold
    assert same.features_ == hybrid.features_ and same.selection_ == hybrid.selection_
    np.testing.assert_array_equal(same.predict(x), hybrid.predict(x))

    head = path / HEAD_FILE
    raw = bytearray(head.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    head.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="sha256"):
        load_model(path)


def test_the_drift_reference_is_the_hybrids_own(data, trained):
    """reference.json of a label-aware folder profiles the fraud probability at the hybrid's
    threshold (it held the autoencoder's score and threshold, so `monitor` compared the
    probability with the autoencoder's threshold)."""
    from aedetect.monitoring.reference import load_reference

    ref, hybrid = load_reference(trained["model"]), load_model(trained["model"])
    assert ref.threshold == pytest.approx(hybrid.threshold_)
    validation = data.iloc[trained["split"].validation]
    scores = np.sort(hybrid.anomaly_score(validation[FEATURES]))
    assert 0 <= min(ref.score["sample"]) and max(ref.score["sample"]) <= 1  # probabilities
    assert ref.score["n"] == len(scores) and max(ref.score["sample"]) == pytest.approx(scores[-1], rel=1e-6)


def test_guide_protocol_falls_back_and_says_why(data, trained):
    # The guide protocol keeps every labelled anomaly outside the test set in the selection set.
    from aedetect.model.hybrid import fit_hybrid

    det = trained["hybrid"].detector
    split = split_frame(data, TrainConfig(protocol="guide", seed=0), CREDITCARD)
    hybrid = fit_hybrid(det, data, split, CREDITCARD)
    assert hybrid.head_ is None
    assert "0 labelled anomalies" in hybrid.fallback_ and "selection set" in hybrid.fallback_


def test_cli_score_flags_by_the_probability(trained, tmp_path):
    from typer.testing import CliRunner

    from aedetect.cli.app import app

    scored = tmp_path / "scored.csv"
    res = CliRunner().invoke(app, ["score", "--model", str(trained["model"]), "--data", str(trained["csv"]),
                                   "--out", str(scored)])
    assert res.exit_code == 0, res.output
    doc = json.loads((trained["model"] / HYBRID_FILE).read_text())
    assert doc["threshold"]["rule"] == "min_precision" and doc["calibration"]["method"] == "sigmoid"
    out = pd.read_csv(scored)
    assert out["score"].between(0, 1).all()
    assert ((out["score"] > doc["threshold"]["value"]) == out["flag"].astype(bool)).all()
    metrics = tmp_path / "metrics.json"
    res = CliRunner().invoke(app, ["evaluate", "--model", str(trained["model"]), "--data", str(trained["csv"]),
                                   "--out", str(metrics)])
    assert res.exit_code == 0, res.output
    m = json.loads(metrics.read_text())
    assert m["score"] == "fraud_probability" and m["threshold_rule"] == "min_precision"
    assert m["n_test"] == len(trained["split"].test)


def test_every_scorer_is_one_declared_protocol(trained, detector, model_dir):
    """The estimator, the label-aware hybrid and the NumPy runtime satisfy one AnomalyScorer,
    and the hybrid names the autoencoder state it offers instead of forwarding any attribute."""
    import math

    from aedetect.model.scorer import AnomalyScorer
    from aedetect.serving.runtime import load_scorer

    hybrid = trained["hybrid"]
    for scorer in (detector, hybrid, load_scorer(model_dir)):
        assert isinstance(scorer, AnomalyScorer), type(scorer).__name__
    assert hybrid.feature_names_in_ is hybrid.detector.feature_names_in_
    with pytest.raises(AttributeError):
        getattr(hybrid, "history_")  # noqa: B009 (the autoencoder's, not the hybrid's)
    with pytest.raises(ValueError, match="finite"):
        hybrid.threshold = math.nan


def test_open_model_reads_the_manifest_once(trained, monkeypatch):
    from aedetect.store import folder as store_folder

    calls = []
    read = store_folder.read_manifest
    monkeypatch.setattr(store_folder, "read_manifest", lambda p: calls.append(p) or read(p))
    assert isinstance(load_model(trained["model"]), HybridDetector)
    assert len(calls) == 1
