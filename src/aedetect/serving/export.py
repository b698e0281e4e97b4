"""Export a model for other runtimes: a SavedModel for TensorFlow Serving, and ONNX.

Both take the raw columns, one tensor of shape [None] per input column named like the column
(`Time`, `V1`, ..., `Amount`, or a team's own `amount`, `merchant_category`...): float64 for
numbers (NaN = missing, where the model reads gaps) and for datetimes (seconds since 1970),
string for categories ("" = missing); see `input_dtypes`. They return `score` (float64 [None])
and `flag` (int32 [None], 1 when score > threshold). Preprocessing runs inside the graph in the
same order and precision as the NumPy path: log1p and periodic features in float64, then a
float32 cast, centre and scale; the network (float32 weights) and the score in float64. Tests
check each against the Python path within `EXPORT_RTOL` relative on every row.

SavedModel: written with `keras.export.ExportArchive`, so the Keras model's variables (and the
category lookup tables) are tracked the way TF Serving's loader (the TF1 session loader) and
`saved_model_cli run` expect; the `serve` endpoint is also the `serving_default` signature. A
label-aware model (`HybridDetector` over the Keras autoencoder) exports with its head: the
trees walked level by level in TensorFlow ops (`_walk_trees_tf`), the blend and the calibration.

ONNX: built node by node with the `onnx` package from the TensorFlow-free runtime's weights
(`aedetect.serving.runtime.Scorer`), so it needs neither TensorFlow nor a converter. Opset 17, plus the
`ai.onnx.ml` LabelEncoder for categories. A label-aware model (`HybridDetector` over the runtime,
from `open_scorer`) exports with its head: the head's inputs, its gradient-boosted trees as one
`ai.onnx.ml` TreeEnsemble with float64 splits and leaves (opset 21, `ai.onnx.ml` 5), the blend
and the calibration. In both exports a label-aware model's `score` is the fraud probability. Outputs are written under a
temporary name and renamed into place; permissions follow the umask.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from aedetect.errors import ArtifactError
from aedetect.files import atomic_file, atomic_folder
from aedetect.store.layout import MISSING

EXPORT_INFO = "aedetect-export.json"
ONNX_OPSET = 17
ONNX_ML_OPSET = 2  # LabelEncoder with string keys and float or int64 values
# A label-aware model's trees need ai.onnx.ml's TreeEnsemble (opset 5: float64 splits and leaves),
# which comes with opset 21 and IR 10.
LABEL_AWARE_OPSETS = (21, 5, 10)
# The documented bound (docs/serving.md) on |export - Python path| / |Python path| per row score.
EXPORT_RTOL = 1e-9


def input_dtypes(detector) -> dict[str, str]:
    """The dtype of each input column in both exports: strings for categories ("" = missing),
    float64 for numbers (NaN = missing) and datetimes (seconds since 1970); a label-aware
    model's label-based risk columns after them, numbers."""
    return {c: "string" if k == "category" else "float64" for c, k in _input_kinds(detector)}


def _input_kinds(detector) -> list[tuple[str, str]]:
    """(column, kind) of every input: the preprocessor's, then label-based risk columns."""
    pre = detector.preprocessor_
    risk = getattr(detector, "label_features", [])
    return [*zip(pre.feature_names, pre.input_kinds, strict=True), *((c, "number") for c in risk)]


INPUT_KINDS = {"number": "float64", "boolean": "float64 0/1", "datetime": "float64 seconds since 1970",
               "category": "string"}


def describe_inputs(detector) -> str:
    """What both exports take, in one line: one [None] tensor per column, counted by dtype, e.g.
    `30 float64 ('Time', 'V1', ..., 'Amount')` or `7 string ('merchant_category', ...; "" = missing),
    1 float64 seconds since 1970 ('timestamp'), 6 float64 (...)`."""
    groups: dict[str, list[str]] = {}
    for name, kind in _input_kinds(detector):
        groups.setdefault(INPUT_KINDS[kind], []).append(name)
    parts = []
    for dtype, names in groups.items():
        shown = names if len(names) <= 3 else [*names[:2], "...", names[-1]]
        listed = ", ".join(n if n == "..." else repr(n) for n in shown)
        if dtype == "string":
            listed += '; "" = missing'
        parts.append(f"{len(names)} {dtype} ({listed})")
    return "one [None] tensor per column, named like it: " + ", ".join(parts)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _safe(name: str) -> str:
    """A TensorSpec name (graph op names allow [A-Za-z0-9_.-/] and no leading symbol)."""
    out = "".join(ch if ch.isalnum() or ch in "_.-" else "_" for ch in name)
    return out if out[:1].isalnum() else f"c_{out}"


# -- SavedModel -----------------------------------------------------------------------------
def export_savedmodel(detector, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write `detector` (an AutoencoderDetector, or a HybridDetector over one) as a SavedModel
    folder at `path` (see the module docstring)."""
    import keras
    import tensorflow as tf

    from aedetect.model.scores import contributions_tf

    hybrid = detector if getattr(detector, "head_", None) is not None else None
    det = detector.detector if hasattr(detector, "head_") else detector
    names = list(detector.feature_names_in_)
    model, pre = det.model_, det.preprocessor_
    kind, stats, threshold = det.score_type, det.score_stats_, float(detector.threshold_)
    dtypes = input_dtypes(detector)
    spec = {name: tf.TensorSpec([None], getattr(tf, dtypes[name]), name=_safe(name)) for name in names}
    head = None if hybrid is None else _label_aware_tf(hybrid)

    def serve(columns):
        x = pre.transform_tf(columns)
        r, code = det.network_tf(x)
        per = contributions_tf(kind, stats, r)
        score = tf.reduce_sum(per, axis=1)
        if head is not None:
            score = head(columns, x, per, code, score)
        return {"score": score, "flag": tf.cast(score > threshold, tf.int32)}

    path = Path(path)
    with atomic_folder(path, overwrite=overwrite) as tmp:
        os.chmod(tmp, 0o777 & ~_umask())  # a temporary folder is created 700
        archive = keras.export.ExportArchive()
        archive.track(model)
        for table in pre.tf_tables():  # frequency encodings of many-valued categories
            archive.track(table)
        archive.add_endpoint("serve", serve, input_signature=[spec])
        archive.write_out(str(tmp), verbose=False)
        info = {"format": "tensorflow-savedmodel", "signature": "serving_default",
                "inputs": {name: f"{dtype} [None]" for name, dtype in dtypes.items()},
                "outputs": {"score": "float64 [None]", "flag": "int32 [None]"},
                "threshold": threshold,
                **({"score_is": "fraud probability (label-aware)"} if hybrid is not None else {})}
        (tmp / EXPORT_INFO).write_text(json.dumps(info, indent=2) + "\n")
    return path


def _label_aware_tf(hybrid):
    """The label-aware mode's fraud probability in TensorFlow ops, as a function of the input
    columns, the preprocessed rows, the autoencoder's contributions (`contributions_tf`), its
    code layer and its score: the head's inputs assembled as `HybridDetector._inputs` does
    (rounded to float32), the trees walked level by level (`_walk_trees_tf`), the blend and the
    calibration, all in float64."""
    import tensorflow as tf

    from aedetect.model.hybrid import HEAD_INPUTS

    _check_head(hybrid)
    det, groups, cal = hybrid.detector, hybrid.features_, hybrid.calibrator_
    trees = _tree_arrays(hybrid.head_)
    f, members = det.preprocessor_.n_features_out, det.members_

    def head(columns, x, per, code, score):
        blocks = []
        if "raw" in groups:
            blocks.append(tf.cast(x, tf.float64))
        blocks += [tf.cast(columns[c], tf.float64)[:, None] for c in hybrid.label_features]
        if "score" in groups:
            blocks.append(score[:, None])
        if "contributions" in groups:  # each preprocessed feature's share, summed over the members
            blocks.append(tf.reduce_sum(tf.reshape(per, [-1, members, f]), axis=1))
        if "code" in groups:
            blocks.append(code)
        m = tf.concat(blocks, axis=1) if len(blocks) > 1 else blocks[0]
        if hybrid.head_inputs_ == HEAD_INPUTS:  # float32, as the head learnt them
            m = tf.cast(tf.cast(m, tf.float32), tf.float64)
        z = _walk_trees_tf(trees, m)
        if hybrid.blend_ is not None:
            b = hybrid.blend_
            w, hd, a = b["head_weight"], b["head"], b["autoencoder"]
            z = (w * (z - hd["center"]) / hd["scale"]
                 + (1 - w) * (tf.math.log1p(score) - a["center"]) / a["scale"])
        if cal["method"] == "sigmoid":
            z = cal["a"] * z + cal["b"]
        return tf.math.sigmoid(z)

    return head


def _check_head(hybrid) -> None:
    """Refuse, with its reason, a label-aware model that neither export can carry."""
    from aedetect.model.hybrid import CODE_NUMPY

    if "code" in hybrid.features_ and hybrid.code_ != CODE_NUMPY:
        raise ArtifactError("the head reads the code layer as Keras computed it (a folder before hybrid "
                            "format 3): retrain with --use-labels to export it")
    if hybrid.calibrator_["method"] not in ("sigmoid", "none"):
        raise ArtifactError(f"the exports take a sigmoid calibration, not {hybrid.calibrator_['method']!r}")


def _tree_arrays(head) -> dict:
    """A binary HistGradientBoostingClassifier's trees as flat arrays: every tree's nodes one
    after the other, children as positions in them, each tree's root, its depth and the
    baseline."""
    categorical = getattr(head, "is_categorical_", None)
    if getattr(head, "n_trees_per_iteration_", 1) != 1 or (categorical is not None and np.any(categorical)):
        raise ArtifactError("the exports take a binary head on numeric features only")
    parts, roots, start = [], [], 0
    for (predictor,) in head._predictors:
        nodes = predictor.nodes
        if nodes["is_categorical"].any():
            raise ArtifactError("the exports take a head without categorical splits")
        parts.append(nodes)
        roots.append(start)
        start += len(nodes)
    offsets = np.repeat(roots, [len(n) for n in parts])
    nodes = np.concatenate(parts)
    return {"feature": nodes["feature_idx"].astype("int64"), "split": nodes["num_threshold"].astype("float64"),
            "left": nodes["left"].astype("int64") + offsets, "right": nodes["right"].astype("int64") + offsets,
            "leaf": nodes["is_leaf"].astype(bool), "missing_left": nodes["missing_go_to_left"].astype(bool),
            "value": nodes["value"].astype("float64"), "roots": np.asarray(roots, "int64"),
            "depth": int(nodes["depth"].max()), "baseline": float(np.ravel(head._baseline_prediction)[0])}


def _walk_trees_tf(trees: dict, x):
    """The log-odds of rows `x` (float64 [n, features]): every tree walked one level at a time,
    all trees side by side, as many levels as the deepest leaf."""
    import tensorflow as tf

    t = {k: tf.constant(v) for k, v in trees.items() if isinstance(v, np.ndarray)}
    idx = tf.tile(t["roots"][None, :], [tf.shape(x)[0], 1])  # [n, trees]: each row's node in each tree
    for _ in range(trees["depth"]):
        value = tf.gather(x, tf.gather(t["feature"], idx), batch_dims=1)
        left = tf.where(tf.math.is_nan(value), tf.gather(t["missing_left"], idx), value <= tf.gather(t["split"], idx))
        step = tf.where(left, tf.gather(t["left"], idx), tf.gather(t["right"], idx))
        idx = tf.where(tf.gather(t["leaf"], idx), idx, step)
    return tf.reduce_sum(tf.gather(t["value"], idx), axis=1) + trees["baseline"]


# -- ONNX -----------------------------------------------------------------------------------
class _Graph:
    """A small helper that names nodes and constants as it goes."""

    def __init__(self):
        self.nodes, self.inits, self._n = [], [], 0

    def const(self, value, dtype) -> str:
        from onnx import numpy_helper

        name = f"const_{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs) -> str:
        from onnx import helper

        self._n += 1
        out = out or f"{op_type.lower()}_{self._n}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out


def _autoencoder_nodes(g: _Graph, scorer) -> dict[str, str]:
    """The autoencoder's part of the graph, from the raw columns to the score: the names of the
    standardised preprocessed rows (`x`, float32, as the head reads them), the per-feature
    contributions (`per`: [n, members x features], member by member), the score and the code
    layer's activations (`code`, float64, as `store.weights.bottleneck` computes them)."""
    from onnx import TensorProto

    from aedetect.store.weights import code_layer

    pre = scorer.preprocessor_
    axis1 = g.const([1], "int64")
    cols = []
    for b in pre.blocks:
        c = b["column"]
        v = g.op("Unsqueeze", c, axis1)  # [n, 1]
        if b["kind"] in ("numeric", "periodic"):
            nan = None
            if b.get("indicator"):  # a gap takes the training median and lights the indicator
                nan = g.op("IsNaN", v)
                v = g.op("Where", nan, g.const(b["median"], "float64"), v)
            if b["kind"] == "periodic":
                for p in b["periods"]:
                    phase = g.op("Mul", v, g.const(2 * np.pi / p, "float64"))
                    cols += [g.op("Sin", phase), g.op("Cos", phase)]
            elif b.get("log"):  # log1p(v) as Log(1 + v) (ONNX has no Log1p); below 0: NaN, never clamped
                log = g.op("Log", g.op("Add", v, g.const(1.0, "float64")))
                cols.append(g.op("Where", g.op("Less", v, g.const(0.0, "float64")),
                                 g.const(float("nan"), "float64"), log))
            else:
                cols.append(v)
            if nan is not None:
                cols.append(g.op("Cast", nan, to=TensorProto.DOUBLE))
        elif b["kind"] == "onehot":  # category -> position (rare ones share one, unseen last)
            cats, rare = b["categories"], b.get("rare", [])
            k = len(cats) + (1 if rare else 0) + 1
            keys = cats + rare
            values = list(range(len(cats))) + [len(cats)] * len(rare)
            if MISSING in keys:  # an empty string is the missing category, as in NumPy
                keys, values = keys + [""], values + [values[keys.index(MISSING)]]
            code = g.op("LabelEncoder", v, domain="ai.onnx.ml", keys_strings=keys,
                        values_int64s=values, default_int64=k - 1)
            cols.append(g.op("Cast", g.op("OneHot", g.op("Squeeze", code, axis1), g.const(k, "int64"),
                                          g.const([0.0, 1.0], "float32"), axis=1),
                             to=TensorProto.DOUBLE))
        else:  # frequency: the category's training share; unseen (-1) lights its indicator
            keys = list(b["frequencies"])
            vals = [float(b["frequencies"][key]) for key in keys]
            if MISSING in b["frequencies"]:
                keys, vals = keys + [""], vals + [float(b["frequencies"][MISSING])]
            freq = g.op("LabelEncoder", v, domain="ai.onnx.ml", keys_strings=keys,
                        values_floats=vals, default_float=-1.0)
            freq = g.op("Cast", freq, to=TensorProto.DOUBLE)
            cols += [g.op("Max", freq, g.const(0.0, "float64")),
                     g.op("Cast", g.op("Less", freq, g.const(0.0, "float64")), to=TensorProto.DOUBLE)]
    x = g.op("Cast", g.op("Concat", *cols, axis=1), to=TensorProto.FLOAT)
    x32 = g.op("Div", g.op("Sub", x, g.const(pre.mean_, "float32")), g.const(pre.scale_, "float32"))
    h = x = g.op("Cast", x32, to=TensorProto.DOUBLE)  # the network in float64, as in the runtime
    stop = code_layer([kernel.shape[1] for kernel, _, _ in scorer.layers])  # as `bottleneck` reads it
    code = None
    for i, (kernel, bias, activation) in enumerate(scorer.layers):
        h = g.op("Add", g.op("MatMul", h, g.const(kernel, "float64")), g.const(bias, "float64"))
        if activation != "linear":
            h = g.op({"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid"}[activation], h)
        if i == stop:
            code = h
    if scorer.members_ > 1:  # an ensemble: each member's reconstruction against the input
        x = g.op("Tile", x, g.const([1, scorer.members_], "int64"))
    r = g.op("Sub", h, x)
    d, stats = float(pre.n_features_out * scorer.members_), scorer.score_stats_
    if scorer.score_type == "mse":
        per = g.op("Div", g.op("Mul", r, r), g.const(d, "float64"))
    elif scorer.score_type == "feature_normalized":
        per = g.op("Div", g.op("Mul", r, r), g.const(stats["scale"] * d, "float64"))
    else:
        c = g.op("Sub", r, g.const(stats["mean"], "float64"))
        p = stats["precision"]
        if p.ndim == 3:  # an ensemble: (members, rows, features), member k with precision k
            c = g.op("Transpose", g.op("Reshape", c, g.const([-1, *p.shape[:2]], "int64")), perm=[1, 0, 2])
            per = g.op("Mul", g.op("MatMul", c, g.const(p, "float64")), c)
            per = g.op("Reshape", g.op("Transpose", per, perm=[1, 0, 2]), g.const([0, -1], "int64"))
        else:
            per = g.op("Mul", g.op("MatMul", c, g.const(p, "float64")), c)
    return {"x": x32, "per": per, "score": g.op("ReduceSum", per, axis1, keepdims=0), "code": code}


def _tree_ensemble(g: _Graph, head, x: str) -> str:
    """A fitted binary HistGradientBoostingClassifier's log-odds (`decision_function`) of the
    float64 rows `x`: one ai.onnx.ml TreeEnsemble (opset 5) with float64 splits and leaves,
    plus the baseline. A row goes left when its value is at most the split, or when it is NaN
    and the node sends missing values left, as scikit-learn's predictor does."""
    from onnx import numpy_helper

    t = _tree_arrays(head)
    leaf = t["leaf"]
    index = np.empty(len(leaf), dtype=np.int64)  # a node's place among the interior nodes, or the leaves
    index[~leaf] = np.arange((~leaf).sum())
    index[leaf] = np.arange(leaf.sum())
    inner = np.flatnonzero(~leaf)
    modes = np.zeros(len(inner), np.uint8)  # BRANCH_LEQ
    feats, splits, missing = t["feature"][inner], t["split"][inner], t["missing_left"][inner]
    left, right = t["left"][inner], t["right"][inner]
    true_ids, true_leaf, false_ids, false_leaf = index[left], leaf[left], index[right], leaf[right]
    roots = index[t["roots"]]
    lone = leaf[t["roots"]]  # a tree that is a single leaf: a split whose two branches reach it
    if lone.any():
        extra = len(inner) + np.arange(lone.sum())
        lone_leaf = index[t["roots"][lone]]
        modes = np.concatenate([modes, np.zeros(lone.sum(), np.uint8)])
        feats = np.concatenate([feats, np.zeros(lone.sum(), np.int64)])
        splits = np.concatenate([splits, np.zeros(lone.sum())])
        missing = np.concatenate([missing, np.ones(lone.sum(), bool)])
        true_ids, false_ids = np.concatenate([true_ids, lone_leaf]), np.concatenate([false_ids, lone_leaf])
        true_leaf = np.concatenate([true_leaf, np.ones(lone.sum(), bool)])
        false_leaf = np.concatenate([false_leaf, np.ones(lone.sum(), bool)])
        roots[lone] = extra
    out = g.op("TreeEnsemble", x, domain="ai.onnx.ml", aggregate_function=1, post_transform=0, n_targets=1,
               tree_roots=roots.tolist(), nodes_modes=numpy_helper.from_array(modes),
               nodes_featureids=feats.tolist(), nodes_splits=numpy_helper.from_array(splits.astype(np.float64)),
               nodes_truenodeids=true_ids.tolist(), nodes_trueleafs=true_leaf.astype(int).tolist(),
               nodes_falsenodeids=false_ids.tolist(), nodes_falseleafs=false_leaf.astype(int).tolist(),
               nodes_missing_value_tracks_true=missing.astype(int).tolist(),
               leaf_targetids=[0] * int(leaf.sum()), leaf_weights=numpy_helper.from_array(t["value"][leaf]))
    return g.op("Add", g.op("Squeeze", out, g.const([1], "int64")), g.const(t["baseline"], "float64"))


def _label_aware_nodes(g: _Graph, hybrid, ae: dict[str, str]) -> str:
    """The label-aware mode's fraud probability: the head's inputs assembled as
    `HybridDetector._inputs` does (rounded to float32), its log-odds, the blend with the
    autoencoder's log score and the calibration."""
    from onnx import TensorProto

    from aedetect.model.hybrid import HEAD_INPUTS

    det = hybrid.detector
    groups = hybrid.features_
    f = det.preprocessor_.n_features_out
    blocks = []
    if "raw" in groups:
        blocks.append(g.op("Cast", ae["x"], to=TensorProto.DOUBLE))
    for name in hybrid.label_features:  # the label-based risk columns, after the raw block
        blocks.append(g.op("Unsqueeze", name, g.const([1], "int64")))
    if "score" in groups:
        blocks.append(g.op("Unsqueeze", ae["score"], g.const([1], "int64")))
    if "contributions" in groups:
        per = ae["per"]
        if det.members_ > 1:  # each feature's contribution summed over the members
            per = g.op("ReduceSum", g.op("Reshape", per, g.const([0, det.members_, f], "int64")),
                       g.const([1], "int64"), keepdims=0)
        blocks.append(per)
    if "code" in groups:
        blocks.append(ae["code"])
    x = g.op("Concat", *blocks, axis=1) if len(blocks) > 1 else blocks[0]
    if hybrid.head_inputs_ == HEAD_INPUTS:  # float32, as the head learnt them
        x = g.op("Cast", g.op("Cast", x, to=TensorProto.FLOAT), to=TensorProto.DOUBLE)
    z = _tree_ensemble(g, hybrid.head_, x)
    if hybrid.blend_ is not None:  # w (head - c) / s + (1 - w) (log1p(score) - c) / s
        b = hybrid.blend_
        w, h, a = b["head_weight"], b["head"], b["autoencoder"]
        head_part = g.op("Div", g.op("Sub", z, g.const(h["center"], "float64")), g.const(h["scale"], "float64"))
        log = g.op("Log", g.op("Add", ae["score"], g.const(1.0, "float64")))
        ae_part = g.op("Div", g.op("Sub", log, g.const(a["center"], "float64")), g.const(a["scale"], "float64"))
        z = g.op("Add", g.op("Mul", head_part, g.const(w, "float64")), g.op("Mul", ae_part, g.const(1 - w, "float64")))
    cal = hybrid.calibrator_
    if cal["method"] == "sigmoid":
        z = g.op("Add", g.op("Mul", z, g.const(cal["a"], "float64")), g.const(cal["b"], "float64"))
    return g.op("Sigmoid", z)


def onnx_model(scorer):
    """The ONNX ModelProto of a `Scorer`, or of a label-aware model scored by one (see the module
    docstring)."""
    from onnx import TensorProto, checker, helper

    from aedetect import __version__

    g = _Graph()
    hybrid = scorer if hasattr(scorer, "head_") else None
    det = scorer if hybrid is None else hybrid.detector
    head = hybrid is not None and hybrid.head_ is not None
    if head:
        _check_head(hybrid)
    if not hasattr(det, "layers"):
        raise ArtifactError("the ONNX graph is built from the NumPy runtime's weights: load the model "
                            "with aedetect.serving.runtime.open_scorer")
    names = list(scorer.feature_names_in_)
    dtypes = input_dtypes(scorer)
    ae = _autoencoder_nodes(g, det)
    score = _label_aware_nodes(g, hybrid, ae) if head else ae["score"]
    g.op("Identity", score, out="score")
    g.op("Cast", g.op("Greater", "score", g.const(scorer.threshold_, "float64")),
         to=TensorProto.INT32, out="flag")
    graph = helper.make_graph(
        g.nodes, "aedetect",
        [helper.make_tensor_value_info(c, TensorProto.STRING if dtypes[c] == "string" else TensorProto.DOUBLE,
                                       ["n"]) for c in names],
        [helper.make_tensor_value_info("score", TensorProto.DOUBLE, ["n"]),
         helper.make_tensor_value_info("flag", TensorProto.INT32, ["n"])],
        g.inits)
    opsets = (ONNX_OPSET, ONNX_ML_OPSET, 8) if not head else LABEL_AWARE_OPSETS
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opsets[0]),
                                                    helper.make_opsetid("ai.onnx.ml", opsets[1])],
                              producer_name="aedetect", producer_version=__version__)
    model.ir_version = opsets[2]  # the IR of the opset: older ONNX Runtimes load a plain model too
    helper.set_model_props(model, {"threshold": repr(scorer.threshold_), "score": scorer.score_type,
                                   "features": json.dumps(names),
                                   "n_preprocessed": str(det.preprocessor_.n_features_out)})
    checker.check_model(model, full_check=True)
    return model


def export_onnx(scorer, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write `scorer` (from `aedetect.serving.runtime.load_scorer`) as one ONNX file at `path`."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ArtifactError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it")
    data = onnx_model(scorer).SerializeToString()
    with atomic_file(path) as tmp:  # one rename; permissions per the umask
        tmp.write_bytes(data)
    return path
