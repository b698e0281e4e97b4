"""Exports score like the Python path, in the consumers that serve them: `saved_model_cli`,
TF Serving's TF1 session loader (in a process that never imports aedetect), ONNX Runtime."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from aedetect.data.generate import generate_transactions
from aedetect.errors import ArtifactError
from aedetect.serving.export import EXPORT_RTOL, export_onnx, export_savedmodel
from aedetect.serving.runtime import load_scorer

TF1_LOADER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    path, data, names, out = sys.argv[1], np.load(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
    with tf.compat.v1.Session(graph=tf.Graph()) as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
        sig = meta.signature_def["serving_default"]
        feed = {sig.inputs[c].name: data[:, j] for j, c in enumerate(names)}
        res = sess.run({k: v.name for k, v in sig.outputs.items()}, feed)
    assert not any(m.startswith("aedetect") for m in sys.modules)
    np.save(out + "/score.npy", res["score"]); np.save(out + "/flag.npy", res["flag"])
""")


def max_relative_difference(got, expected) -> float:
    return float(np.max(np.abs(np.asarray(got) - expected) / np.abs(expected)))


def _check(score, flag, expected, threshold):
    """Every row's score within EXPORT_RTOL relative (the bound docs/serving.md states), flags equal.

    The graph computes the network in float64 like the Python path, and standardises with an
    exact division: a float32 network, or Grappler's reciprocal in place of the division, put
    well-reconstructed rows 1e-7 to 1e-4 off, which this bound catches."""
    assert max_relative_difference(score, expected) <= EXPORT_RTOL
    np.testing.assert_array_equal(flag, (expected > threshold).astype(flag.dtype))


def test_the_docs_state_the_tested_bound():
    docs = (Path(__file__).parents[1] / "docs" / "serving.md").read_text()
    assert f"within {EXPORT_RTOL:.0e}".replace("e-0", "e-") + " relative on every row" in docs


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.parametrize("which", ["default", "single"])
def test_savedmodel_runs_in_saved_model_cli_and_the_tf1_loader(model_dir, single_model_dir, tmp_path,
                                                              umask_022, which):
    """The defaults' 3-network ensemble, and one network."""
    from aedetect.model.detector import load_detector

    detector = load_detector(model_dir if which == "default" else single_model_dir)
    path = export_savedmodel(detector, tmp_path / "export")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no temporary folder left
    assert stat.S_IMODE(path.stat().st_mode) == 0o755  # readable by a serving user: the umask's mode
    assert stat.S_IMODE((path / "saved_model.pb").stat().st_mode) == 0o644
    names = list(detector.feature_names_in_)
    frame = generate_transactions(400, 0.1, seed=11)[names]
    expected = detector.anomaly_score(frame)  # named columns, as it was fitted (no scikit-learn warning)
    X = frame.to_numpy()
    assert 0 < (expected > detector.threshold_).sum() < len(X)
    np.save(tmp_path / "x.npy", X)
    cli_out, tf1_out = tmp_path / "cli", tmp_path / "tf1"
    tf1_out.mkdir()
    np.savez(tmp_path / "x.npz", **{c: X[:, j] for j, c in enumerate(names)})
    inputs = ";".join(f"{c}={tmp_path / 'x.npz'}[{c}]" for c in names)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    cli = Path(sys.executable).with_name("saved_model_cli")
    procs = [  # the two start TensorFlow side by side
        subprocess.Popen([str(cli), "run", "--dir", str(path), "--tag_set", "serve", "--signature_def",
                          "serving_default", "--inputs", inputs, "--outdir", str(cli_out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env),
        subprocess.Popen([sys.executable, "-c", TF1_LOADER, str(path), str(tmp_path / "x.npy"),
                          json.dumps(names), str(tf1_out)], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env),
    ]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-3000:]
    for out in (cli_out, tf1_out):
        _check(np.load(out / "score.npy"), np.load(out / "flag.npy"), expected, detector.threshold_)
    with pytest.raises(ArtifactError, match="already exists"):
        export_savedmodel(detector, path)


def test_savedmodel_mse_in_process(guide_model_dir, tmp_path):
    """The other score kind and activation, through `tf.saved_model.load`."""
    import tensorflow as tf

    from aedetect.model.detector import load_detector

    det = load_detector(guide_model_dir)
    path = export_savedmodel(det, tmp_path / "export")
    X = generate_transactions(1000, 0.05, seed=3)[det.feature_names_in_]
    out = tf.saved_model.load(str(path)).signatures["serving_default"](
        **{c: tf.constant(X[c].to_numpy()) for c in det.feature_names_in_})
    _check(out["score"].numpy(), out["flag"].numpy(), det.anomaly_score(X), det.threshold_)


@pytest.mark.parametrize("which", ["default", "guide", "single"])
def test_onnx_export_runs_in_onnx_runtime(model_dir, guide_model_dir, single_model_dir, tmp_path,
                                          umask_022, which):
    import onnxruntime as ort
    from typer.testing import CliRunner

    from aedetect.cli.app import app
    from aedetect.model.detector import load_detector

    src = {"default": model_dir, "guide": guide_model_dir, "single": single_model_dir}[which]
    result = CliRunner().invoke(app, ["export", "--model", str(src), "--format", "onnx",
                                      "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    assert "inputs: one [None] tensor per column, named like it: 30 float64 ('Time', 'V1', ..., 'Amount')" \
        in " ".join(result.output.split())
    path = tmp_path / "m.onnx"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    det = load_detector(src)
    names = list(det.feature_names_in_)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == names
    assert [o.name for o in sess.get_outputs()] == ["score", "flag"]
    X = generate_transactions(3000, 0.05, seed=4)[names]
    score, flag = sess.run(["score", "flag"], {c: X[c].to_numpy() for c in names})
    expected = det.anomaly_score(X)  # the Keras path
    _check(score, flag, expected, det.threshold_)
    assert 0 < flag.sum() < len(X)
    assert max_relative_difference(score, load_scorer(src).anomaly_score(X)) <= EXPORT_RTOL
    with pytest.raises(ArtifactError, match="already exists"):
        export_onnx(load_scorer(src), path)


def test_a_negative_value_in_a_log_column_scores_nan_in_both_exports(model_dir, tmp_path):
    """The runtime refuses it (docs/hostile-input.md); an export cannot refuse, so ONNX Runtime
    and a loaded SavedModel score it NaN, never as the clamped value 0."""
    import onnxruntime as ort
    import tensorflow as tf

    from aedetect.model.detector import load_detector

    det = load_detector(model_dir)
    names = list(det.feature_names_in_)
    X = generate_transactions(10, 0.0, seed=6)[names].copy()
    X.loc[X.index[0], "Amount"] = -10.0
    onnx_path = export_onnx(load_scorer(model_dir), tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_score = sess.run(["score"], {c: X[c].to_numpy() for c in names})[0]
    saved = tf.saved_model.load(str(export_savedmodel(det, tmp_path / "sm"))).signatures["serving_default"]
    tf_score = saved(**{c: tf.constant(X[c].to_numpy()) for c in names})["score"].numpy()
    for score in (onnx_score, tf_score):
        assert np.isnan(score[0]) and np.isfinite(score[1:]).all()


@pytest.mark.parametrize("min_leaf", [2, 31])
def test_a_heads_trees_score_as_scikit_learn_in_both_exports(min_leaf):
    """A label-aware head's log-odds from its fitted predictors, as ONNX's TreeEnsemble and as
    the SavedModel's level-by-level walk: scikit-learn's `decision_function` on every row, with
    missing values routed as it routes them, and trees that are a single leaf (min_samples_leaf
    above half the rows: no split is allowed)."""
    import onnxruntime as ort
    import tensorflow as tf
    from onnx import TensorProto, helper
    from sklearn.ensemble import HistGradientBoostingClassifier

    from aedetect.serving.export import LABEL_AWARE_OPSETS, _Graph, _tree_arrays, _tree_ensemble, _walk_trees_tf

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    x[::7, 1] = np.nan  # missing values go where each node learnt to send them
    head = HistGradientBoostingClassifier(max_iter=6, min_samples_leaf=min_leaf, random_state=0).fit(x, y)
    lone = [bool(p.nodes["is_leaf"][0]) for (p,) in head._predictors]
    assert all(lone) if min_leaf == 31 else not any(lone)
    want = head.decision_function(x)
    g = _Graph()
    g.op("Identity", _tree_ensemble(g, head, "x"), out="z")
    graph = helper.make_graph(g.nodes, "trees", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["n", 3])],
                              [helper.make_tensor_value_info("z", TensorProto.DOUBLE, ["n"])], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", LABEL_AWARE_OPSETS[0]),
                                                    helper.make_opsetid("ai.onnx.ml", LABEL_AWARE_OPSETS[1])])
    model.ir_version = LABEL_AWARE_OPSETS[2]
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(["z"], {"x": x})[0], want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(_walk_trees_tf(_tree_arrays(head), tf.constant(x)).numpy(), want,
                               rtol=1e-12, atol=1e-12)
