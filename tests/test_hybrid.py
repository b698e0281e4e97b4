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
    raw_only = HybridDetector(hybrid.detector, features=("raw",), head_weight=1.0, seed=0)  # the head alone
    fit, cal = label_rows(split, len(data))
    raw_only.fit(data.iloc[fit][FEATURES], data["Class"].to_numpy()[fit])
    supervised = average_precision_score(y, raw_only.anomaly_score(test[FEATURES]))
    hyb = average_precision_score(y, p)
    # Quality floor on generated data (measured: 0.97 against 0.94 and 0.84): the residual
    # features add to both parts alone.
    assert hyb > max(ae, supervised) and hyb >= 0.9, (hyb, ae, supervised)
    # Chosen out of fold on the training rows, where they also help.
    sel = hybrid.selection_
    assert sel["chosen"] == "all" and hybrid.features_ == FEATURE_GROUPS
    assert max(v for k, v in sel["scores"].items() if k.startswith("all")) > max(
        v for k, v in sel["scores"].items() if k.startswith("raw"))
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


def test_too_few_labels_fall_back_to_the_autoencoder(data, trained, tmp_path):
    det = trained["hybrid"].detector
    fit = np.flatnonzero(data["Class"].to_numpy() == 0)[:3000]
    frauds = np.flatnonzero(data["Class"].to_numpy() == 1)[:2]
    rows = np.concatenate([fit, frauds])
    hybrid = HybridDetector(det).fit(data.iloc[rows][FEATURES], data["Class"].to_numpy()[rows])
    assert hybrid.head_ is None and "2 labelled anomalies" in hybrid.fallback_
    x = data.iloc[:500][FEATURES]
    np.testing.assert_array_equal(hybrid.anomaly_score(x), det.anomaly_score(x))
    assert hybrid.threshold == det.threshold
    with pytest.raises(RuntimeError, match="no supervised head"):
        hybrid.predict_proba(x)
    # its ONNX export is the autoencoder's graph with the autoencoder's threshold
    import onnxruntime as ort

    from aedetect.serving.export import EXPORT_RTOL, export_onnx
    from aedetect.serving.runtime import open_scorer

    lean = open_scorer(hybrid.save(tmp_path / "model"))
    assert lean.head_ is None
    sess = ort.InferenceSession(str(export_onnx(lean, tmp_path / "m.onnx")), providers=["CPUExecutionProvider"])
    score, flag = sess.run(["score", "flag"], {c: x[c].to_numpy("float64") for c in FEATURES})
    want = det.anomaly_score(x)
    assert np.max(np.abs(score - want) / want) <= EXPORT_RTOL
    np.testing.assert_array_equal(flag, (want > det.threshold_).astype("int32"))


def test_labels_the_folds_cannot_share_keep_the_raw_features_and_the_prior(data, trained):
    """Every labelled anomaly in the last fold: no other fold can teach a head, so no choice is
    made (raw features, the prior's weight) and the hybrid still scores."""
    det = trained["hybrid"].detector
    y_all = data["Class"].to_numpy()
    rows = np.concatenate([np.flatnonzero(y_all == 0)[:3000], np.flatnonzero(y_all == 1)[:12]])
    hybrid = HybridDetector(det).fit(data.iloc[rows][FEATURES], y_all[rows])
    assert hybrid.selection_["folds"] == 0 and hybrid.features_ == ("raw",)
    assert hybrid.blend_["head_weight"] == pytest.approx(12 / 37)
    assert np.isfinite(hybrid.anomaly_score(data.iloc[:200][FEATURES])).all()


def test_a_handful_of_labels_is_not_chosen_by_but_blended_by_the_prior(data, trained):
    """Below MIN_CHOICE_ANOMALIES labelled anomalies the folds could share them, but average
    precision over so few is noise: no choice, the prior's weight; from it on, a choice."""
    from aedetect.model.hybrid import MIN_CHOICE_ANOMALIES

    det = trained["hybrid"].detector
    y_all = data["Class"].to_numpy()
    normals, frauds = np.flatnonzero(y_all == 0)[:3000], np.flatnonzero(y_all == 1)
    for n, folds in ((MIN_CHOICE_ANOMALIES - 1, 0), (MIN_CHOICE_ANOMALIES, 4)):
        spread = frauds[np.linspace(0, len(frauds) - 1, n).astype(int)]  # in every fold
        rows = np.sort(np.concatenate([normals[normals < spread.max()], spread]))
        hybrid = HybridDetector(det).fit(data.iloc[rows][FEATURES], y_all[rows])
        assert hybrid.n_anomalies_ == n and hybrid.selection_["folds"] == folds
        if not folds:
            assert hybrid.features_ == ("raw",) and hybrid.blend_["head_weight"] == pytest.approx(n / (n + 25))


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


def test_guide_protocol_learns_from_the_selection_sets_anomalies(data, trained):
    # The guide protocol keeps every labelled anomaly outside the test set in the selection set:
    # the head learns from them with the training rows, and the validation normals (which it
    # never sees) give the threshold.
    from aedetect.model.hybrid import fit_hybrid

    det = trained["hybrid"].detector
    split = split_frame(data, TrainConfig(protocol="guide", seed=0), CREDITCARD)
    y = data["Class"].to_numpy()
    fit, cal = label_rows(split, len(data), y)
    assert not y[np.setdiff1d(fit, split.selection)].any() and y[fit].sum() == y[split.selection].sum() > 0
    assert not set(fit) & set(split.test) and not set(fit) & set(split.validation)
    np.testing.assert_array_equal(cal, split.validation)
    hybrid = fit_hybrid(det, data, split, CREDITCARD)
    assert hybrid.fallback_ is None and hybrid.n_anomalies_ == y[split.selection].sum()
    assert hybrid.calibrator_["method"] == "none" and "calibration rows' normals" in hybrid.threshold.source
    # The threshold keeps the promised share of the never-seen validation normals.
    flagged = hybrid.anomaly_score(data.iloc[split.validation][FEATURES]) > hybrid.threshold_
    assert flagged.mean() == pytest.approx(1 - det.threshold_percentile / 100, abs=0.01)


def test_the_blend_weighs_the_head_by_the_labels(data, trained):
    """The head's weight is n / (n + prior_anomalies): prior 0 ranks as the head alone, a huge
    prior as the autoencoder alone, and the default sits between them."""
    from scipy.stats import spearmanr

    det, split = trained["hybrid"].detector, trained["split"]
    fit, _ = label_rows(split, len(data))
    X, y = data.iloc[fit][FEATURES], data["Class"].to_numpy()[fit]
    test = data.iloc[split.test][FEATURES]
    n = int(y.sum())
    fitted = {prior: HybridDetector(det, features=("raw",), prior_anomalies=prior, head_weight="prior").fit(X, y)
              for prior in (0, 25, 1e12)}
    assert fitted[25].blend_["head_weight"] == pytest.approx(n / (n + 25))
    head_only = fitted[0].head_.decision_function(det.preprocess(test))
    assert spearmanr(fitted[0].anomaly_score(test), head_only).statistic > 0.999
    assert spearmanr(fitted[1e12].anomaly_score(test), det.anomaly_score(test)).statistic > 0.999
    middle = fitted[25].anomaly_score(test)
    assert spearmanr(middle, head_only).statistic < 0.999
    assert spearmanr(middle, det.anomaly_score(test)).statistic < 0.999


def test_the_weight_and_features_are_chosen_out_of_fold(data, trained):
    """`train --use-labels` (features and weight "auto") scored four candidates out of fold and
    kept the best; its blend carries the chosen weight."""
    hybrid = trained["hybrid"]
    sel = hybrid.selection_
    assert sel["folds"] == 4 and len(sel["scores"]) == 4
    best = max(sel["scores"], key=sel["scores"].get)
    assert best == f"{sel['chosen']} features, {sel['head_weight']}"
    n = hybrid.n_anomalies_
    expected = n / (n + hybrid.prior_anomalies) if sel["head_weight"] == "prior" else 1.0
    assert hybrid.blend_["head_weight"] == pytest.approx(expected)
    assert hybrid.features_ == (FEATURE_GROUPS if sel["chosen"] == "all" else ("raw",))
    with pytest.raises(ValueError, match="head_weight"):
        HybridDetector(hybrid.detector, head_weight=2).fit(data[FEATURES], data["Class"])


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


def test_a_format_1_folder_scores_as_it_did(data, trained, tmp_path):
    """A folder written before the blend (hybrid.json version 1: no "blend") scores with the
    head's calibrated probability alone, as that version did."""
    import hashlib
    import shutil

    from aedetect.model.hybrid import CODE_KERAS, _apply_calibration, residual_features
    from aedetect.store.folder import MANIFEST_FILE

    path = shutil.copytree(trained["model"], tmp_path / "model")
    doc = json.loads((path / HYBRID_FILE).read_text())
    for key in ("blend", "prior_anomalies"):
        doc.pop(key)
    doc["format_version"] = 1
    (path / HYBRID_FILE).write_text(json.dumps(doc))
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    manifest["files"][HYBRID_FILE] = hashlib.sha256((path / HYBRID_FILE).read_bytes()).hexdigest()
    (path / MANIFEST_FILE).write_text(json.dumps(manifest))
    old = load_model(path)
    assert old.blend_ is None
    x = data.iloc[:1000][FEATURES]
    assert old.code_ == CODE_KERAS  # before format 3: the code layer as Keras computed it
    head_input = residual_features(old.detector, x, old.features_, old.code_)[0]
    expected = _apply_calibration(old.calibrator_, old.head_.decision_function(head_input))
    np.testing.assert_allclose(old.anomaly_score(x), expected, rtol=1e-12)
    doc["format_version"] = 4
    (path / HYBRID_FILE).write_text(json.dumps(doc))
    manifest["files"][HYBRID_FILE] = hashlib.sha256((path / HYBRID_FILE).read_bytes()).hexdigest()
    (path / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="version 1, 2 or 3"):
        load_model(path)


def test_every_scoring_path_gives_the_same_probability(data, trained):
    """score_matrix (batch and service) and score_with_contributions reuse the network's pass;
    they must give anomaly_score's probability and the autoencoder's contributions."""
    hybrid = trained["hybrid"]
    x = data.iloc[:1500][FEATURES]
    p = hybrid.anomaly_score(x)
    scores, contrib = hybrid.score_matrix(x.to_numpy())
    np.testing.assert_allclose(scores, p, rtol=1e-9)
    np.testing.assert_allclose(contrib, hybrid.feature_contributions(x), rtol=1e-9)
    s2, c2 = hybrid.score_with_contributions(x)
    np.testing.assert_allclose(s2, p, rtol=1e-9)
    np.testing.assert_allclose(c2, contrib, rtol=1e-9)


def test_the_service_scores_a_label_aware_model_as_the_batch_scorer(data, trained):
    """`aedetect serve` on a label-aware folder answers the fraud probability `score_table` gives
    (its manifest, model and threshold routes too)."""
    import pyarrow as pa
    from fastapi.testclient import TestClient

    from aedetect.model.hybrid import open_model
    from aedetect.serving.app import ServiceSettings, create_app
    from aedetect.serving.batch import score_table

    rows = data.iloc[:40][FEATURES]
    want = score_table(open_model(trained["model"]), pa.Table.from_pandas(rows, preserve_index=False))["score"]
    with TestClient(create_app(trained["model"], ServiceSettings())) as client:
        r = client.post("/v1/score", json={"transactions": rows.to_dict(orient="records")})
        assert r.status_code == 200, r.text
        got = [res["score"] for res in r.json()["results"]]
        assert client.get("/v1/model").status_code == 200
    np.testing.assert_allclose(got, want.to_numpy(), rtol=2e-5)
    assert 0 <= min(got) and max(got) <= 1 and r.json()["threshold"] == pytest.approx(trained["hybrid"].threshold_)


@pytest.fixture(scope="module")
def coded(data, trained, tmp_path_factory):
    """A label-aware folder whose head reads every feature group, the code layer included (the
    CLI's choice on the fixture's data may be the raw features alone)."""
    hybrid, split = trained["hybrid"], trained["split"]
    y = data["Class"].to_numpy()
    fit, cal = label_rows(split, len(data), y)
    coded = HybridDetector(hybrid.detector, features=FEATURE_GROUPS).fit(
        data.iloc[fit][FEATURES], y[fit], data.iloc[cal][FEATURES], y[cal])
    assert coded.head_ is not None and any(n.startswith("ae_code_") for n in coded.head_feature_names_)
    path = coded.save(tmp_path_factory.mktemp("coded") / "model")
    return {"hybrid": coded, "model": path}


def test_the_code_layer_is_one_numpy_computation_in_every_engine(data, coded):
    """The head's code features come from `store.weights.bottleneck` in float64, from the stored
    float32 weights, for the Keras detector and the NumPy runtime alike; the Keras layer's
    float32 output is close to it but not equal (so folders before format 3 keep it)."""
    from aedetect.model.hybrid import CODE_KERAS, CODE_NUMPY, residual_features
    from aedetect.serving.runtime import open_scorer

    hybrid = coded["hybrid"]
    assert hybrid.code_ == CODE_NUMPY
    assert json.loads((coded["model"] / HYBRID_FILE).read_text())["code"] == CODE_NUMPY
    x = data.iloc[:3000][FEATURES]
    keras_side, names = residual_features(hybrid.detector, x, FEATURE_GROUPS)
    numpy_side, names2 = residual_features(open_scorer(coded["model"]).detector, x, FEATURE_GROUPS)
    assert names == names2
    code = [i for i, n in enumerate(names) if n.startswith("ae_code_")]
    np.testing.assert_array_equal(numpy_side[:, code], keras_side[:, code])
    np.testing.assert_allclose(numpy_side, keras_side, rtol=1e-9, atol=1e-12)
    in_keras = residual_features(hybrid.detector, x, ("code",), CODE_KERAS)[0]
    np.testing.assert_allclose(in_keras, keras_side[:, code], rtol=1e-4, atol=1e-5)
    assert not np.array_equal(in_keras, keras_side[:, code])


def test_a_label_aware_model_scores_without_tensorflow(data, coded, tmp_path):
    """`open_scorer` (batch scoring, the service, Spark's workers) gives a label-aware folder's
    head the NumPy runtime: the same probabilities as the Keras hybrid, and `aedetect score`
    in a process where TensorFlow and Keras cannot be imported."""
    import subprocess
    import sys

    from aedetect.serving.runtime import Scorer, open_scorer

    hybrid = coded["hybrid"]
    lean = open_scorer(coded["model"])
    assert isinstance(lean, HybridDetector) and isinstance(lean.detector, Scorer) and not lean.needs_keras
    x = data[FEATURES]  # rows the head learnt from, calibration rows and later rows
    want = hybrid.anomaly_score(x)
    np.testing.assert_allclose(lean.anomaly_score(x), want, rtol=1e-9)
    scores, contrib = lean.score_matrix(x.to_numpy())
    np.testing.assert_allclose(scores, want, rtol=1e-9)
    np.testing.assert_allclose(contrib, hybrid.feature_contributions(x), rtol=1e-9)
    assert lean.threshold_ == hybrid.threshold_

    csv, out = tmp_path / "rows.csv", tmp_path / "scored.csv"
    x.to_csv(csv, index=False)
    code = ("import sys\n"
            "for name in ('tensorflow', 'keras'):\n"  # as tests/test_runtime.py: importing them fails
            "    sys.modules[name] = None\n"
            "from aedetect.cli.app import main\n"
            f"sys.argv = ['aedetect', 'score', '--model', {str(coded['model'])!r}, '--data', {str(csv)!r}, "
            f"'--out', {str(out)!r}]\n"
            "main()")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "TensorFlow" not in res.stdout + res.stderr
    np.testing.assert_allclose(pd.read_csv(out)["score"], want, rtol=1e-9)


def test_a_folder_whose_head_reads_keras_code_is_scored_with_keras(data, coded, tmp_path):
    """A folder written before format 3 whose head reads the code layer learnt Keras' float32
    codes: `open_scorer` keeps the Keras autoencoder for it, and the runtime is refused."""
    import hashlib
    import shutil

    from aedetect.model.hybrid import CODE_KERAS, scoring_needs_keras
    from aedetect.serving.runtime import load_scorer, open_scorer
    from aedetect.store.folder import MANIFEST_FILE, open_folder

    path = shutil.copytree(coded["model"], tmp_path / "model")
    doc = json.loads((path / HYBRID_FILE).read_text())
    doc.pop("code")
    doc["format_version"] = 2
    (path / HYBRID_FILE).write_text(json.dumps(doc))
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    manifest["files"][HYBRID_FILE] = hashlib.sha256((path / HYBRID_FILE).read_bytes()).hexdigest()
    (path / MANIFEST_FILE).write_text(json.dumps(manifest))
    assert scoring_needs_keras(open_folder(path))
    old = open_scorer(path)
    assert old.code_ == CODE_KERAS and old.needs_keras and hasattr(old.detector, "model_")
    x = data.iloc[:500][FEATURES]
    np.testing.assert_allclose(old.anomaly_score(x), load_model(path).anomaly_score(x), rtol=1e-12)
    with pytest.raises(ArtifactError, match="as Keras computed it"):
        HybridDetector.load(path, open_scorer(coded["model"]).detector)  # the same network, in NumPy
    # the runtime alone would score the autoencoder, not the head's probability: refused
    with pytest.raises(ArtifactError, match="label-aware model .*open_scorer"):
        load_scorer(coded["model"])


@pytest.mark.parametrize("which", ["trained", "coded"])
def test_a_label_aware_model_exports_to_onnx(data, trained, coded, which, tmp_path):
    """`aedetect export --format onnx` carries the head: the raw features, or every feature group
    (the autoencoder's score, contributions and code), the trees, the blend and the calibration.
    ONNX Runtime gives each row the NumPy runtime's fraud probability within EXPORT_RTOL and the
    same flag."""
    import onnxruntime as ort
    from typer.testing import CliRunner

    from aedetect.cli.app import app
    from aedetect.serving.export import EXPORT_RTOL
    from aedetect.serving.runtime import open_scorer

    model = {"trained": trained["model"], "coded": coded["model"]}[which]
    out = tmp_path / "m.onnx"
    res = CliRunner().invoke(app, ["export", "--model", str(model), "--format", "onnx", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "'score' is the fraud probability" in " ".join(res.output.split())
    hybrid = open_scorer(model)
    assert hybrid.head_ is not None and hybrid.blend_ is not None
    if which == "coded":
        assert hybrid.features_ == FEATURE_GROUPS
    x = data[FEATURES]  # rows the head learnt from, calibration rows and later rows
    want = hybrid.anomaly_score(x)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == FEATURES
    score, flag = sess.run(["score", "flag"], {c: x[c].to_numpy("float64") for c in FEATURES})
    assert np.max(np.abs(score - want) / want) <= EXPORT_RTOL
    np.testing.assert_array_equal(flag, (want > hybrid.threshold_).astype("int32"))
    assert 0 < flag.sum() < len(x)


# every feature group (coded) in `make test`; the raw features alone, a subset of its graph, in the slow run
@pytest.mark.parametrize("which", [pytest.param("trained", marks=pytest.mark.slow), "coded"])
def test_a_label_aware_model_exports_to_a_savedmodel(data, trained, coded, which, tmp_path):
    """`aedetect export` writes a SavedModel with the head: the trees walked level by level in
    TensorFlow ops, the blend and the calibration. TF Serving's TF1 session loader, in a process
    that never imports aedetect, gives each row the runtime's fraud probability within
    EXPORT_RTOL and the same flag."""
    import json
    import os
    import subprocess
    import sys

    from test_export import TF1_LOADER
    from typer.testing import CliRunner

    from aedetect.cli.app import app
    from aedetect.serving.export import EXPORT_RTOL
    from aedetect.serving.runtime import open_scorer

    model = {"trained": trained["model"], "coded": coded["model"]}[which]
    path = tmp_path / "sm"
    res = CliRunner().invoke(app, ["export", "--model", str(model), "--out", str(path)])
    assert res.exit_code == 0, res.output + str(res.exception)
    assert "'score' is the fraud probability" in " ".join(res.output.split())
    assert json.loads((path / "aedetect-export.json").read_text())["score_is"].startswith("fraud probability")
    hybrid = open_scorer(model)
    x = data[FEATURES]
    want = hybrid.anomaly_score(x)
    np.save(tmp_path / "x.npy", x.to_numpy("float64"))
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", TF1_LOADER, str(path), str(tmp_path / "x.npy"),
                           json.dumps(FEATURES), str(out)], cwd=tmp_path, capture_output=True, text=True,
                          env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    score, flag = np.load(out / "score.npy"), np.load(out / "flag.npy")
    assert np.max(np.abs(score - want) / want) <= EXPORT_RTOL
    np.testing.assert_array_equal(flag, (want > hybrid.threshold_).astype("int32"))
    assert 0 < flag.sum() < len(x)
