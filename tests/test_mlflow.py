"""MLflow (`aedetect.mlflow`): a model folder logged as a pyfunc model scores like `aedetect score`
with MLflow's own loader, in a fresh process that finds aedetect only in the model's copy of it
(`code_paths`), and behind `mlflow models serve`; its signature follows the model's schema."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow  # the `mlflow` extra (in `dev`): mlflow-skinny
import numpy as np
import pandas as pd
import pytest
from servers import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """A SQLite tracking store (MLflow 3.17 refuses a file store); the working folder is the
    store's, where MLflow puts the artifacts."""
    d = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{d}/mlflow.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(d)
        mlflow.set_tracking_uri(uri)
        yield uri
        mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def numbers_data(tmp_path_factory):
    """Rows for the session's numbers-only model (`model_dir`)."""
    from aedetect.data.generate import generate_transactions

    path = tmp_path_factory.mktemp("numbers") / "rows.csv"
    generate_transactions(1000, 0.05, seed=3).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def history_model(tmp_path_factory):
    """An own-data model as `aedetect train` makes one: inferred schema (categories, a datetime,
    gaps) with customer history, trained one epoch on the first 1,500 rows of a generated
    transactions log; the next 500 rows as CSV."""
    from typer.testing import CliRunner

    from aedetect.cli.app import app
    from aedetect.data.generate import generate_transaction_log

    d = tmp_path_factory.mktemp("history")
    log = generate_transaction_log(2000, 0.03, seed=8)
    log.iloc[:1500].to_csv(d / "first.csv", index=False)
    log.iloc[1500:].to_csv(d / "later.csv", index=False)
    res = CliRunner().invoke(app, ["train", "--data", str(d / "first.csv"), "--out", str(d / "model"),
                                   "--entity-columns", "customer_id", "--epochs", "1"])
    assert res.exit_code == 0, res.output + str(res.exception)
    return d / "model", d / "later.csv"


@pytest.fixture(scope="module")
def label_aware_model(tmp_path_factory):
    """A label-aware model (its head over every feature group, the code layer included) on a
    CLI-trained autoencoder, and later rows to score, as CSV."""
    from typer.testing import CliRunner

    from aedetect.cli.app import app
    from aedetect.data.creditcard import CREDITCARD
    from aedetect.data.generate import generate_transactions
    from aedetect.model.hybrid import FEATURE_GROUPS, HybridDetector, open_model

    d = tmp_path_factory.mktemp("label-aware")
    data = generate_transactions(6000, 0.03, seed=5)
    data.to_csv(d / "train.csv", index=False)
    generate_transactions(800, 0.03, seed=6).to_csv(d / "later.csv", index=False)
    res = CliRunner().invoke(app, ["train", "--data", str(d / "train.csv"), "--out", str(d / "ae"),
                                   "--epochs", "2", "--hidden-units", "16,6,16"])
    assert res.exit_code == 0, res.output + str(res.exception)
    x, y = data[list(CREDITCARD.features)], data["Class"].to_numpy()
    hybrid = HybridDetector(open_model(d / "ae"), features=FEATURE_GROUPS).fit(x[:4500], y[:4500], x[4500:], y[4500:])
    assert hybrid.head_ is not None and any(n.startswith("ae_code_") for n in hybrid.head_feature_names_)
    return hybrid.save(d / "model"), d / "later.csv"


@pytest.fixture(params=["numbers", "history", "label-aware"])
def case(request, model_dir, numbers_data):
    """(model folder, CSV of rows to score) for each kind of model."""
    if request.param == "numbers":
        return model_dir, numbers_data
    return request.getfixturevalue({"history": "history_model", "label-aware": "label_aware_model"}[request.param])


def aedetect_score(model, data, out) -> pd.DataFrame:
    """What `aedetect score` writes for `data` (the CLI itself)."""
    from typer.testing import CliRunner

    from aedetect.cli.app import app

    res = CliRunner().invoke(app, ["score", "--model", str(model), "--data", str(data), "--out", str(out)])
    assert res.exit_code == 0, res.output + str(res.exception)
    return pd.read_parquet(out)


def typed(frame: pd.DataFrame, signature) -> pd.DataFrame:
    """The signature's columns in its types, as a caller passes them to `predict` (MLflow casts
    neither int64 to double nor numbers to strings)."""
    out = {}
    for spec in signature.inputs.inputs:
        col, kind = frame[spec.name], spec.type.name
        if kind == "string":
            out[spec.name] = pd.Series([None if pd.isna(v) else str(v) for v in col], dtype=object)
        elif kind == "double":
            out[spec.name] = col.astype("float64")
        elif kind == "datetime":
            out[spec.name] = pd.to_datetime(col)
        else:
            out[spec.name] = col
    return pd.DataFrame(out)


def assert_same(got: pd.DataFrame, ref: pd.DataFrame, top_k: int = 3) -> None:
    """Scores and contributions within 1e-9 relative, flags, features and reasons equal."""
    reasons = [f"top{i}_{p}" for i in range(1, top_k + 1) for p in ("feature", "reason", "contribution")]
    assert list(got.columns) == ["score", "flag", *reasons]
    assert list(ref.columns) == ["row", "score", "flag", *reasons]
    assert len(got) == len(ref)
    for c in ["score"] + [c for c in reasons if c.endswith("contribution")]:
        np.testing.assert_allclose(got[c].to_numpy(dtype=float), ref[c].to_numpy(dtype=float), rtol=1e-9, err_msg=c)
    assert (got["flag"].to_numpy() == ref["flag"].to_numpy()).all()
    for c in reasons:
        if not c.endswith("contribution"):
            assert got[c].astype(str).tolist() == ref[c].astype(str).tolist(), c


# -- in this process ----------------------------------------------------------------------------
def test_mlflow_loader_scores_like_aedetect_score(tracking, case, tmp_path):
    import aedetect.mlflow

    model, data = case
    info = aedetect.mlflow.log_model(model, name="fraud")
    assert info.model_uri.startswith("models:/")
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    frame = typed(pd.read_csv(data), info.signature)
    frame.index = frame.index + 1000  # the output keeps the caller's index
    got = loaded.predict(frame)
    assert got["flag"].dtype == "int64" and (got.index == frame.index).all()
    assert_same(got.reset_index(drop=True), aedetect_score(model, data, tmp_path / "ref.parquet"))
    assert got["flag"].any() and not got["flag"].all()
    shuffled = loaded.predict(frame.sample(frac=1.0, random_state=0))  # history: any order within a call
    pd.testing.assert_frame_equal(shuffled.loc[got.index], got, check_exact=False, rtol=1e-9)


def test_signature_follows_the_schema(history_model, model_dir):
    from aedetect.serving.mlflow import signature

    sig = signature(history_model[0], top_k=2)
    types = {s.name: s.type.name for s in sig.inputs.inputs}
    assert types["timestamp"] == "datetime" and types["amount"] == "double"
    assert types["merchant_category"] == "string" and types["customer_id"] == "string"  # an entity
    assert types["tx_count_1h"] == "string"  # integers read as categories by the schema
    assert "transaction_id" not in types and "is_fraud" not in types
    assert not any("." in name for name in types)  # history features are computed, not read
    assert [(s.name, s.type.name) for s in sig.outputs.inputs] == [
        ("score", "double"), ("flag", "long"), ("top1_feature", "string"), ("top1_reason", "string"),
        ("top1_contribution", "double"), ("top2_feature", "string"), ("top2_reason", "string"),
        ("top2_contribution", "double")]
    numbers = signature(model_dir)
    assert {s.type.name for s in numbers.inputs.inputs} == {"double"} and len(numbers.inputs.inputs) == 30


def test_dates_with_a_format_of_their_own_are_text_in_the_signature():
    """MLflow would parse "04/03/2024" month first; the model reads it with its own format."""
    from aedetect.data.schema import ColumnSpec, DatasetSchema
    from aedetect.serving.mlflow import input_type

    schema = DatasetSchema(columns=[
        ColumnSpec(name="paid", role="time", type="datetime", format="%d/%m/%Y %H:%M"),
        ColumnSpec(name="opened", type="datetime"), ColumnSpec(name="online", type="boolean"),
        ColumnSpec(name="n", type="integer"), ColumnSpec(name="shop", type="categorical")])
    assert [input_type(schema, c) for c in schema.names] == ["string", "datetime", "boolean", "double", "string"]
    assert input_type(None, "V1") == "double"


def test_a_bad_row_fails_the_call_naming_its_row_and_reason(tracking, model_dir, numbers_data):
    from mlflow.exceptions import MlflowException

    import aedetect.mlflow

    info = aedetect.mlflow.log_model(model_dir, name="numbers", top_k=1)
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    frame = pd.read_csv(numbers_data).astype("float64").head(5)
    assert list(loaded.predict(frame).columns) == ["score", "flag", "top1_feature", "top1_reason",
                                                   "top1_contribution"]
    assert len(loaded.predict(frame.head(0))) == 0
    frame.loc[1, "V3"] = np.nan
    with pytest.raises(MlflowException, match=r"input: row 2: column 'V3': empty value"):
        loaded.predict(frame)


def test_a_label_aware_model_that_needs_keras_is_refused(label_aware_model, model_dir, monkeypatch):
    import aedetect.model.hybrid
    from aedetect.errors import ArtifactError
    from aedetect.serving.mlflow import log_model

    monkeypatch.setattr(aedetect.model.hybrid, "scoring_needs_keras", lambda folder, doc=None: True)
    with pytest.raises(ArtifactError, match="as Keras computed it .* needs TensorFlow"):
        log_model(label_aware_model[0], name="hybrid")
    with pytest.raises(TypeError, match="code_paths"):
        log_model(model_dir, name="x", code_paths=[])


def _covered_by(logged) -> set[str]:
    """The distributions `logged` requirements install: themselves and their own requirements."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    covered, todo = set(), [Requirement(r).name for r in logged]
    while todo:
        name = canonicalize_name(todo.pop())
        if name not in covered:
            covered.add(name)
            todo += [Requirement(r).name for r in requires(name) or []
                     if Requirement(r).marker is None or Requirement(r).marker.evaluate({"extra": ""})]
    return covered


# A fresh process that scores with only the distributions it is given importable: any other
# installed one (here: the dev tools) is hidden, as in an environment built from the logged
# requirements. Some libraries import optional packages when they find them (scikit-learn rich,
# joblib psutil, skops pytest); hidden, they must do without.
_LEAN_SCORING = """
import json, sys
from importlib.metadata import packages_distributions
from packaging.utils import canonicalize_name
allowed, runs = set(json.loads(sys.argv[1])), json.loads(sys.argv[2])
dists = {k: {canonicalize_name(d) for d in v} for k, v in packages_distributions().items()}

class Hide:
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in dists and not dists[top] & allowed:
            raise ModuleNotFoundError(f"No module named {top!r} (hidden)", name=top)

sys.meta_path.insert(0, Hide())
started = set(sys.modules)  # the interpreter's own start-up (site, .pth hooks)
import pandas as pd
from aedetect.data.arrow import frame_table
from aedetect.serving.batch import needed_columns, score_table
from aedetect.serving.runtime import open_scorer
for model, data in runs:
    scorer = open_scorer(model)
    score_table(scorer, frame_table(pd.read_csv(data), needed_columns(scorer)))
print(json.dumps(sorted({d for m in set(sys.modules) - started for d in dists.get(m.split(".")[0], [])})))
"""


def test_requirements_are_the_pyproject_pins_and_cover_what_scoring_imports(model_dir, history_model,
                                                                          label_aware_model, tmp_path):
    """The logged requirements equal pyproject.toml's pins, and a fresh process where only they
    (and what they require) can be imported scores: both autoencoder kinds (a block of more
    than 2,048 rows) with `requirements()`, a label-aware model with its own, importing no
    TensorFlow."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    from aedetect.data.generate import generate_transactions
    from aedetect.serving.mlflow import requirements

    pins = {canonicalize_name(Requirement(r).name): r  # every "name==version" of pyproject.toml
            for r in re.findall(r'"([\w.\-]+==[^"]+)"', (ROOT / "pyproject.toml").read_text())}
    for r in requirements(label_aware=True):
        assert pins[canonicalize_name(Requirement(r).name)] == r
    generate_transactions(3000, 0.01, seed=4).to_csv(tmp_path / "rows.csv", index=False)
    cases = {False: [(str(model_dir), str(tmp_path / "rows.csv")), tuple(map(str, history_model))],
             True: [tuple(map(str, label_aware_model))]}
    for label_aware, runs in cases.items():
        allowed = _covered_by(requirements(label_aware)) | {"aedetect", "packaging"}  # packaging: the check's own
        proc = subprocess.run([sys.executable, "-c", _LEAN_SCORING, json.dumps(sorted(allowed)), json.dumps(runs)],
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        assert proc.returncode == 0, proc.stderr[-3000:]
        imported = set(json.loads(proc.stdout.splitlines()[-1])) - {"aedetect"}
        assert {"numpy", "pandas", "pyarrow", "pydantic", "threadpoolctl"} <= imported
        if label_aware:
            assert {"scikit-learn", "skops"} <= imported and not {"tensorflow", "keras"} & imported
        else:
            assert not {"scikit-learn", "skops", "tensorflow"} & imported


# -- outside this process -----------------------------------------------------------------------
def without_aedetect_env(uri: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "MLFLOW_TRACKING_URI": uri, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"}


def test_a_fresh_process_scores_with_the_models_own_aedetect(tracking, history_model, tmp_path):
    """PYTHONPATH without src, and every path that holds an aedetect package (an editable install)
    taken off sys.path before MLflow loads the model: aedetect comes from `code_paths`."""
    import aedetect.mlflow

    model, data = history_model
    info = aedetect.mlflow.log_model(model, name="fresh")
    typed(pd.read_csv(data), info.signature).to_parquet(tmp_path / "in.parquet")
    code = f"""
import importlib.util, os, sys
sys.path = [p for p in sys.path if not os.path.isdir(os.path.join(p or ".", "aedetect"))]
assert importlib.util.find_spec("aedetect") is None, "aedetect is importable before loading"
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model({info.model_uri!r})
model.predict(pd.read_parquet({str(tmp_path / "in.parquet")!r})).to_parquet({str(tmp_path / "out.parquet")!r})
import aedetect
print(aedetect.__file__)
print("tensorflow" in sys.modules)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env=without_aedetect_env(tracking))
    assert proc.returncode == 0, proc.stderr[-3000:]
    where, tensorflow = proc.stdout.splitlines()[-2:]
    assert re.search(r"/artifacts/code/aedetect/__init__\.py$", where), where
    assert tensorflow == "False"
    assert_same(pd.read_parquet(tmp_path / "out.parquet"), aedetect_score(model, data, tmp_path / "ref.parquet"))


def post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_mlflow_models_serve_answers_like_aedetect_score(tracking, history_model, tmp_path):
    """`mlflow models serve --env-manager local` (uvicorn; mlflow-skinny needs no flask) on a
    JSON `dataframe_split` of the CSV's rows as a client sends them; a row without history is a
    400 naming it."""
    import aedetect.mlflow

    model, data = history_model
    info = aedetect.mlflow.log_model(model, name="served")
    port = free_port()
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([str(BIN / "mlflow"), "models", "serve", "-m", info.model_uri, "--env-manager",
                             "local", "-h", "127.0.0.1", "-p", str(port)], cwd=tmp_path,
                            env=without_aedetect_env(tracking), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2).close()
                break
            except OSError:
                time.sleep(0.5)
        rows = pd.read_csv(data)
        split = json.loads(rows.to_json(orient="split", index=False))
        status, body = post(f"http://127.0.0.1:{port}/invocations", {"dataframe_split": split})
        assert status == 200, body
        assert_same(pd.DataFrame(body["predictions"]), aedetect_score(model, data, tmp_path / "ref.parquet"))
        rows.loc[1, "customer_id"] = None
        split = json.loads(rows.head(3).to_json(orient="split", index=False))
        status, body = post(f"http://127.0.0.1:{port}/invocations", {"dataframe_split": split})
        assert status == 400 and "row 2: no history" in body["message"], body
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_the_docs_example_runs(tracking, model_dir, numbers_data, tmp_path, monkeypatch):
    """docs/serving.md's MLflow example, with its paths pointed at a model and rows of this test,
    prints what the page says."""
    import contextlib
    import io

    doc = (ROOT / "docs" / "serving.md").read_text()
    section = doc[doc.index("\n## MLflow\n"):]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    expected = [line.removeprefix("# ") for line in block.splitlines() if line.startswith("# [")]
    code = block.replace('"runs/cc"', repr(str(model_dir))).replace('"creditcard.csv"', repr(str(numbers_data)))
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, "docs/serving.md", "exec"), {})
    finally:
        mlflow.set_tracking_uri(tracking)
    assert out.getvalue().splitlines() == expected
