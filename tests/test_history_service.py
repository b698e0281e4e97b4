"""Entity history in the REST service (issue: fraud lives in history): the service keeps each
entity's recent rows, so transactions sent one by one get the features, and the scores, that
`aedetect score` gives the same rows in one file; bounded memory; restart-safe."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from aedetect.data.generate import generate_payment_log
from aedetect.data.history import add_history
from aedetect.data.infer import infer_schema
from aedetect.data.schema import HistorySpec
from aedetect.serving.app import ServiceSettings, create_app
from aedetect.serving.history_store import HistoryStore
from aedetect.serving.runtime import load_scorer

FIELDS = ["timestamp", "card_id", "terminal_id", "amount"]
RTOL = 2e-5  # as tests/test_parity.py: a different batch size rounds the float32 network's last bits


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model with card and terminal history trained on 14 days; the next 120 rows scored by
    `aedetect score` (one file, continuing from the model's state)."""
    from typer.testing import CliRunner

    from aedetect.cli.app import app

    d = tmp_path_factory.mktemp("history_service")
    log = generate_payment_log(n_days=20, n_cards=200, n_terminals=50, seed=0)
    t = pd.to_datetime(log["timestamp"])
    log[t < pd.Timestamp("2024-03-18")].to_csv(d / "first.csv", index=False)
    later = log[t >= pd.Timestamp("2024-03-18")].head(120).reset_index(drop=True)
    later.to_csv(d / "later.csv", index=False)
    for args in (["train", "--data", d / "first.csv", "--out", d / "m", "--epochs", 3,
                  "--entity-columns", "card_id,terminal_id", "--label-column", "is_fraud",
                  "--exclude-columns", "fraud_kind", "--set", "history_warmup_days=0"],  # every row trains
                 ["score", "--model", d / "m", "--data", d / "later.csv", "--out", d / "s.csv"]):
        res = CliRunner().invoke(app, [str(a) for a in args])
        assert res.exit_code == 0, res.output + str(res.exception)
    return d, later, pd.read_csv(d / "s.csv")["score"].to_numpy()


def _txs(later: pd.DataFrame, start: int, stop: int) -> list[dict]:
    rows = later.iloc[start:stop]
    return [{**{c: r[c] for c in FIELDS}, "id": r["transaction_id"]} for _, r in rows.iterrows()]


def _score_v1(client, later, size: int, start: int = 0, stop: int | None = None) -> np.ndarray:
    stop = len(later) if stop is None else stop
    out = []
    for s in range(start, stop, size):
        r = client.post("/v1/score", json={"transactions": _txs(later, s, min(s + size, stop))})
        assert r.status_code == 200, r.text
        out += [res["score"] for res in r.json()["results"]]
    return np.array(out)


@pytest.mark.parametrize("size", [1, 7])
def test_rows_sent_in_time_order_score_as_the_whole_file(trained, size):
    d, later, expected = trained
    client = TestClient(create_app(d / "m", ServiceSettings(top_k=1)))
    got = _score_v1(client, later, size)
    # the rows of the file with their one-pass history, scored in the request's batches: the same
    scorer = load_scorer(d / "m")
    table = add_history(later, scorer.dataset_schema, scorer.history_state_)[0]
    same_batches = np.concatenate([scorer.anomaly_score(table.iloc[s:s + size])
                                   for s in range(0, len(table), size)])
    np.testing.assert_allclose(got, same_batches, rtol=1e-6)
    # `aedetect score` scores the file in one batch: the float32 network may round the last bits
    # of a row differently in another batch size (measured 1.05e-6 here; test_parity's bound)
    np.testing.assert_allclose(got, expected, rtol=RTOL)


def test_the_store_gives_the_features_of_one_pass_within_1e_9(trained):
    d, later, _ = trained
    scorer = load_scorer(d / "m")
    schema = scorer.dataset_schema
    store = HistoryStore(schema, scorer.history_state_)
    one_by_one = pd.concat([store.add(later.iloc[[i]][FIELDS].reset_index(drop=True))
                            for i in range(len(later))], ignore_index=True)
    whole = add_history(later, schema, scorer.history_state_)[0][schema.history_features]
    assert one_by_one.notna().all().all()
    np.testing.assert_allclose(one_by_one.to_numpy(), whole.to_numpy(), rtol=0, atol=1e-9)
    # the store continues as batch scoring's state would: the same rows, the same flags
    batch_state = add_history(later, schema, scorer.history_state_)[1].rows
    stored = store.state().rows
    assert len(stored) == len(batch_state)
    np.testing.assert_array_equal(np.sort(stored["time"].to_numpy()), np.sort(batch_state["time"].to_numpy()))
    assert stored[store.flags].to_numpy().sum() == batch_state[store.flags].to_numpy().sum()


def test_v2_gives_the_same_scores(trained):
    d, later, expected = trained
    client = TestClient(create_app(d / "m"))
    meta = client.get("/v2/models/m").json()
    assert {i["name"] for i in meta["inputs"]} == set(FIELDS)  # no history column asked for
    got = []
    for i in range(len(later)):
        row = later.iloc[i]
        inputs = [{"name": c, "shape": [1], "datatype": "FP64" if c == "amount" else "BYTES",
                   "data": [row[c].item() if c == "amount" else row[c]]} for c in FIELDS]
        r = client.post("/v2/models/m/infer", json={"inputs": inputs})
        assert r.status_code == 200, r.text
        got += r.json()["outputs"][0]["data"]
    np.testing.assert_allclose(got, expected, rtol=RTOL)


def test_a_restart_continues_from_the_saved_history(trained, tmp_path):
    d, later, expected = trained
    settings = ServiceSettings(history_state=str(tmp_path / "history.parquet"))
    with TestClient(create_app(d / "m", settings)) as client:  # saved on shutdown
        first = _score_v1(client, later, 5, 0, 60)
    assert (tmp_path / "history.parquet").exists()
    with TestClient(create_app(d / "m", settings)) as client:
        second = _score_v1(client, later, 5, 60)
    np.testing.assert_allclose(np.r_[first, second], expected, rtol=RTOL)


def test_the_service_continues_from_the_state_score_wrote_and_warns_of_a_gap(trained, tmp_path, caplog):
    """`aedetect score --history-state` over the first 60 rows writes the history the service then
    starts from: the next rows score as in one file. A first request days after the history it
    continues from is logged once and shown at /v1/model."""
    from typer.testing import CliRunner

    from aedetect.cli.app import app

    d, later, expected = trained
    later.head(60).to_csv(tmp_path / "first60.csv", index=False)
    state = tmp_path / "state.parquet"
    res = CliRunner().invoke(app, ["score", "--model", str(d / "m"), "--data", str(tmp_path / "first60.csv"),
                                   "--out", str(tmp_path / "s.csv"), "--history-state", str(state)])
    assert res.exit_code == 0, res.output + str(res.exception)
    with TestClient(create_app(d / "m", ServiceSettings(history_state=str(state)))) as client:
        np.testing.assert_allclose(_score_v1(client, later, 5, 60), expected[60:], rtol=RTOL)
        info = client.get("/v1/model").json()["history_state"]
        assert info["source"] == f"the history state {state}" and info["gap_warning"] is None

    late = later.iloc[[0]].assign(timestamp=(pd.to_datetime(later["timestamp"].iloc[0]) + pd.Timedelta(days=9))
                                  .strftime("%Y-%m-%d %H:%M:%S"))
    with caplog.at_level("WARNING", logger="uvicorn.error"), TestClient(create_app(d / "m")) as client:
        for _ in range(2):
            assert client.post("/v1/score", json={"transactions": _txs(late, 0, 1)}).status_code == 200
        gap = client.get("/v1/model").json()["history_state"]["gap_warning"]
    assert gap.startswith("the first request: its first row") and "after the last row" in gap
    assert "the model's training data" in gap and "aedetect serve --history-state" in gap
    assert [r.getMessage() for r in caplog.records if "first request" in r.getMessage()] == [gap]  # once


def test_a_retry_with_the_same_id_scores_the_same_and_counts_once(trained):
    d, later, expected = trained
    app = create_app(d / "m")
    client = TestClient(app)
    first = _score_v1(client, later, 1, 0, 10)
    stored = len(app.state.history)
    again = client.post("/v1/score", json={"transactions": _txs(later, 9, 10)}).json()
    assert again["results"][0]["score"] == pytest.approx(first[9], rel=1e-9)
    assert len(app.state.history) == stored
    np.testing.assert_allclose(_score_v1(client, later, 1, 10), expected[10:], rtol=RTOL)
    twice = client.post("/v1/score", json={"transactions": _txs(later, 20, 21) * 2})
    assert twice.status_code == 422 and "more than once" in twice.text


def test_memory_holds_only_the_longest_window(trained):
    d, _, _ = trained
    schema = load_scorer(d / "m").dataset_schema
    schema = schema.model_copy(update={"history": HistorySpec(
        entities=["card_id", "terminal_id"], amount="amount", windows=[600.0, 3600.0])})
    rng = np.random.default_rng(1)
    n = 3000
    t = np.sort(rng.uniform(0, 5 * 86400, n)).round()  # five days, windows of at most an hour
    rows = pd.DataFrame({"timestamp": pd.to_datetime(t, unit="s").strftime("%Y-%m-%d %H:%M:%S"),
                         "card_id": rng.integers(0, 400, n).astype(str),
                         "terminal_id": rng.integers(0, 50, n).astype(str),
                         "amount": rng.lognormal(3, 1, n).round(2)})
    store = HistoryStore(schema)
    for s in range(0, n, 10):
        store.add(rows.iloc[s:s + 10].reset_index(drop=True))
    recent = t > t[-1] - 3600
    assert len(store) == recent.sum() < n / 20
    assert store.entity_values("card_id") == rows["card_id"][recent].nunique()
    # and what it kept is all a later row needs: the last row again, ten minutes later
    extra = rows.iloc[[-1]].assign(timestamp=(pd.Timestamp(t[-1] + 600, unit="s")).strftime(
        "%Y-%m-%d %H:%M:%S")).reset_index(drop=True)
    expected = add_history(pd.concat([rows, extra], ignore_index=True), schema)[0][schema.history_features].iloc[-1]
    assert expected["card_id.count_1h"] >= 1
    np.testing.assert_allclose(store.add(extra).iloc[0], expected, rtol=0, atol=1e-9)


def test_a_request_without_an_entity_or_with_a_null_one_is_a_422_naming_it(trained):
    d, later, _ = trained
    client = TestClient(create_app(d / "m"))
    tx = _txs(later, 0, 1)[0]
    r = client.post("/v1/score", json={"transactions": [{k: v for k, v in tx.items() if k != "card_id"}]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "card_id", r.text
    r = client.post("/v1/score", json={"transactions": [{**tx, "terminal_id": None}]})
    assert r.status_code == 422 and "terminal_id" in r.text
    r = client.post("/v1/score", json={"transactions": [{**tx, "card_id.count_1h": 3}]})
    assert r.status_code == 422  # a history column is computed, never given
    assert len(client.app.state.history) == len(load_scorer(d / "m").history_state_.rows)  # nothing stored


def test_a_model_with_history_refuses_several_workers(trained):
    """Its entity state lives in the serving process: `--workers 2` is a one-line usage error."""
    import subprocess
    import sys

    d, _, _ = trained
    run = subprocess.run([sys.executable, "-m", "aedetect.cli", "serve", "--model", str(d / "m"),
                          "--workers", "2", "--port", "0"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "entity history" in run.stderr and "--workers 1" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("entities", [["card_id", "terminal_id"], ["card_id", "terminal_id", "device"], ["card_id"]])
def test_one_transaction_path_equals_the_general_one(entities):
    """A request of one transaction after its entities' stored rows takes `HistoryStore._one`
    (the arithmetic for that row alone); every other request takes `compute_arrays`. Fed the same
    stream (ties in time, repeated pairs, rows arriving late, rows leaving the windows), a store
    with the short path and one without give the same features within 1e-9 and keep the same rows."""
    schema = infer_schema(pd.DataFrame({"timestamp": ["2024-03-01 00:00:00"] * 3, "card_id": ["a", "b", "c"],
                                        "terminal_id": ["x", "y", "z"], "device": ["d", "e", "f"],
                                        "amount": [1.0, 2.0, 3.0]}), time_column="timestamp")
    schema = schema.model_copy(update={"history": HistorySpec(entities=entities, amount="amount",
                                                              windows=[600.0, 3600.0], hours=True)})
    rng = np.random.default_rng(7)
    n = 1500
    t = np.sort(rng.uniform(0, 86400, n)).round()
    t[rng.random(n) < 0.05] -= 900  # some arrive late
    t[1::7] = t[0::7][:len(t[1::7])]  # ties
    rows = pd.DataFrame({"timestamp": pd.to_datetime(t, unit="s").strftime("%Y-%m-%d %H:%M:%S"),
                         "card_id": rng.integers(0, 30, n).astype(str),
                         "terminal_id": rng.integers(0, 8, n).astype(str),
                         "device": rng.integers(0, 5, n).astype(str), "amount": rng.lognormal(3, 1, n).round(2)})
    short, general = HistoryStore(schema), HistoryStore(schema)
    general._one = lambda *args: None
    took = 0
    for i in range(n):
        row = rows.iloc[[i]].reset_index(drop=True)
        took += short._one(*_one_args(short, row, schema)) is not None
        np.testing.assert_allclose(short.add(row).to_numpy(), general.add(row).to_numpy(), rtol=0, atol=1e-9)
    assert 0.5 * n < took < n  # both paths were taken
    a, b = short.state().rows, general.state().rows
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_exact=False, atol=1e-12)


def _one_args(store, row, schema):
    from aedetect.data.history import table_inputs

    t, ents, amount = table_inputs(row, schema)
    return float(t[0]), [ents[e].iloc[0] for e in store.entities], float(amount[0])


def test_label_risk_in_the_store_equals_one_pass_after_the_labelled_state():
    """A label-aware model's store starts from the training rows with their labels; transactions
    sent one by one (no label known for them) get, by the short path and the general one alike,
    the features of one pass over the training rows and them (1e-9), and the store keeps the
    rows of the label delay plus the longest label window."""
    from aedetect.data.history import compute, table_inputs, table_labels

    rng = np.random.default_rng(11)
    n = 1200
    t = np.sort(rng.uniform(0, 20 * 86400, n)).round()
    rows = pd.DataFrame({"timestamp": pd.to_datetime(t, unit="s").strftime("%Y-%m-%d %H:%M:%S"),
                         "card_id": rng.integers(0, 40, n).astype(str),
                         "terminal_id": rng.integers(0, 6, n).astype(str),
                         "amount": rng.lognormal(3, 1, n).round(2),
                         "is_fraud": (rng.random(n) < 0.1).astype(int)})
    schema = infer_schema(rows.head(3), time_column="timestamp", label_column="is_fraud")
    schema = schema.model_copy(update={"history": HistorySpec(
        entities=["card_id", "terminal_id"], amount="amount", windows=[3600.0, 86400.0], hours=True,
        label_delay=2 * 86400.0, label_windows=[86400.0, 3 * 86400.0])})
    cut = 900
    train, later = rows.iloc[:cut], rows.iloc[cut:].drop(columns="is_fraud").reset_index(drop=True)
    _, state = add_history(train, schema)
    assert state.rows["label"].notna().all() and state.rows["time"].min() <= t[cut - 1] - 86400
    short, general = HistoryStore(schema, state), HistoryStore(schema, state)
    general._one = lambda *args: None
    got_short = pd.concat([short.add(later.iloc[[i]].reset_index(drop=True)) for i in range(len(later))])
    got_general = pd.concat([general.add(later.iloc[[i]].reset_index(drop=True)) for i in range(len(later))])
    time, ents, amount = table_inputs(rows, schema)
    labels = table_labels(rows, schema)
    labels[cut:] = np.nan  # the service knows no label of the transactions it scores
    want, _ = compute(time, ents, amount, schema.history.windows, labels=labels, **schema.history.options)
    want = want.iloc[cut:].to_numpy()
    assert got_short.filter(like="fraud_rate").to_numpy().max() > 0
    np.testing.assert_allclose(got_short.to_numpy(), want, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got_general.to_numpy(), want, rtol=0, atol=1e-9)
    assert short.state().rows["time"].min() > t[-1] - 3 * 86400 - 2 * 86400 - 1


@pytest.fixture(scope="module")
def label_aware(tmp_path_factory):
    """A label-aware model (`--use-labels`, labels known a day after the payment) trained on 14
    days of a generated log; the next days' rows."""
    from typer.testing import CliRunner

    from aedetect.cli.app import app

    d = tmp_path_factory.mktemp("label_aware")
    log = generate_payment_log(n_days=22, n_cards=200, n_terminals=30, seed=5, fraud_rate=0.05)
    t = pd.to_datetime(log["timestamp"])
    log[t < t.min() + pd.Timedelta(days=14)].to_csv(d / "first.csv", index=False)
    res = CliRunner().invoke(app, ["train", "--data", str(d / "first.csv"), "--out", str(d / "m"), "--epochs", 2,
                                   "--entity-columns", "card_id,terminal_id", "--label-column", "is_fraud",
                                   "--exclude-columns", "fraud_kind", "--use-labels", "--set", "label_delay_days=1"])
    assert res.exit_code == 0, res.output + str(res.exception)
    assert "+ 8 label-based risk columns (label delay 1 d)" in " ".join(res.output.split())
    # the first days are history only for the autoencoder; the head still learns from their labels
    flat = " ".join(res.output.split())
    assert "give the later rows their history" in flat and "the supervised head still learns from their labels" in flat
    return d / "m", log[t >= t.min() + pd.Timedelta(days=14)].head(600).reset_index(drop=True)


def test_verdicts_posted_to_the_service_count_as_a_file_with_those_labels(label_aware):
    """Transactions scored one by one, then their verdicts posted to /v1/labels: the later
    transactions score as `score_table` scores one table holding the verdicts as its labels (and
    differ from a service that got none); an id the history does not hold is named; a model
    without label-based risk has no such route."""
    import pyarrow as pa

    from aedetect.model.hybrid import open_model
    from aedetect.serving.batch import score_table

    model, later = label_aware
    cut = 400  # the first rows get verdicts; the last ones come more than a day after them
    assert (pd.to_datetime(later["timestamp"]).iloc[cut:] > pd.to_datetime(later["timestamp"]).iloc[0]
            + pd.Timedelta(days=1)).any()
    told, silent = (TestClient(create_app(model, ServiceSettings())) for _ in range(2))
    with told, silent:
        for client in (told, silent):
            _score_v1(client, later, 1, 0, cut)
        verdicts = [{"id": i, "label": int(y)} for i, y in zip(later["transaction_id"][:cut], later["is_fraud"][:cut],
                                                               strict=True)]
        r = told.post("/v1/labels", json={"labels": [*verdicts, {"id": "never-seen", "label": 1}]})
        assert r.status_code == 200, r.text
        assert r.json() == {"updated": cut, "not_held": ["never-seen"]}
        assert told.post("/v1/labels", json={"labels": [{"id": "x", "label": 2}]}).status_code == 422
        got, without = (_score_v1(c, later, 1, cut) for c in (told, silent))
    table = later.drop(columns=["fraud_kind"]).astype({"is_fraud": "float64"})
    table.loc[cut:, "is_fraud"] = np.nan  # no verdict yet for the rows being scored
    want = score_table(open_model(model), pa.Table.from_pandas(table, preserve_index=False))["score"].to_numpy()[cut:]
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-7)
    assert not np.allclose(got, without, rtol=RTOL, atol=1e-7)


def test_the_head_learns_from_the_warm_ups_rows_that_the_autoencoder_leaves_out(label_aware):
    """The first days are history only for the autoencoder (its split leaves them out); the head
    learns from every row outside the selection and test windows, theirs included."""
    import json

    from aedetect.model.hybrid import HybridDetector

    model, _ = label_aware
    hybrid = HybridDetector.load(model)
    split = hybrid.detector.split_
    warm, sizes = split["history_warmup_rows"], split["sizes"]
    assert warm > 0
    rows = json.loads((model / "hybrid.json").read_text())["rows"]
    every = len(pd.read_csv(model.parent / "first.csv"))
    assert rows["train"] == every - sizes["selection"] - sizes["test"]  # the early frauds too
    assert rows["train"] > warm + sizes["train"] + sizes["validation"]


def test_a_model_without_label_risk_has_no_labels_route(trained):
    d, _, _ = trained
    with TestClient(create_app(d / "m", ServiceSettings())) as client:
        assert client.post("/v1/labels", json={"labels": [{"id": "a", "label": 1}]}).status_code == 404


def test_label_risk_goes_to_the_head_only_and_scoring_without_labels_warns(label_aware, tmp_path):
    """`train --use-labels` with entity columns: the autoencoder reads the history features, the
    head the label-based risk beside them; `aedetect score` of a file without the label column
    says its rates read the training labels only, and a file with it does not."""
    from typer.testing import CliRunner

    from aedetect.cli.app import app
    from aedetect.model.hybrid import open_model

    model, later = label_aware
    hybrid = open_model(model)
    risk = hybrid.detector.dataset_schema.label_features
    assert "terminal_id.fraud_rate_7d" in risk and "card_id.frauds_30d" in risk
    assert not set(risk) & set(hybrid.detector.feature_names_in_)
    assert list(hybrid.feature_names_in_[-len(risk):]) == risk and set(risk) <= set(hybrid.head_feature_names_)
    later.to_csv(tmp_path / "with.csv", index=False)
    later.drop(columns="is_fraud").to_csv(tmp_path / "without.csv", index=False)
    outputs = {}
    for name in ("with", "without"):
        res = CliRunner().invoke(app, ["score", "--model", str(model), "--data", str(tmp_path / f"{name}.csv"),
                                       "--out", str(tmp_path / f"{name}.scored.csv")])
        assert res.exit_code == 0, res.output
        outputs[name] = " ".join(res.output.split())
    said = "no 'is_fraud' column: the label-based risk features read only the labels of the model's"
    assert said in outputs["without"]
    assert "label-based risk" not in outputs["with"]


@pytest.mark.parametrize("which", ["autoencoder", "label-aware"])
def test_monitor_computes_the_history_as_score_does(trained, label_aware, which):
    """`aedetect monitor` on a file of a history model (plain or label-aware): the history columns
    are computed from the file after the model's state, as `aedetect score` computes them, so
    every row is scored, with `score_table`'s scores."""
    import pyarrow as pa

    from aedetect.model.hybrid import open_model
    from aedetect.monitoring.batch import monitor_frame
    from aedetect.monitoring.reference import load_reference
    from aedetect.serving.batch import score_table

    if which == "autoencoder":
        d, later, _ = trained
        model = d / "m"
        det = load_scorer(model)
    else:
        model, later = label_aware
        det = open_model(model)
    run = monitor_frame(det, load_reference(model), later, label_column="is_fraud")
    assert run.summary["scored_rows"] == len(later) and run.summary["unscored"]["rows"] == 0
    want = score_table(det, pa.Table.from_pandas(later.drop(columns=["fraud_kind"]), preserve_index=False))["score"]
    np.testing.assert_allclose(run.window_scores[0], want.to_numpy(), rtol=RTOL, atol=1e-7)


def test_history_columns_the_reference_was_too_young_for_are_shown_and_never_alarm(trained):
    """Trained on 14 days, the reference's validation rows have 10-14 days of history: columns
    that compare with 30 days (the longest window) are not yet what they will be later, so they
    and the score are profiled but never alarm; the settled ones (1 hour and 1 day) are profiled
    on their settled rows and alarm as any column does. A reference taken from a raw log file
    (`--reference`) computes its history after the model's state."""
    from aedetect.monitoring.batch import monitor_frame, read_rows, rich_table, young_hint
    from aedetect.monitoring.reference import compare_batch, load_reference, reference_from_frame

    d, later, _ = trained
    det, ref = load_scorer(d / "m"), load_reference(d / "m")
    young = {c for c, p in ref.columns.items() if p.get("young")}
    settled = {c for c, p in ref.columns.items() if p.get("settled")}
    assert {"card_id.new_terminal_id_1d", "card_id.count_30d", "card_id.since_last", "terminal_id.card_id_seen",
            "terminal_id.amount_z_30d"} <= young
    assert {"card_id.count_1h", "card_id.count_1d", "terminal_id.count_1d", "card_id.amount_ratio_1d"} <= settled
    assert not young & settled and ref.columns["amount"].keys().isdisjoint({"young", "settled"})
    assert ref.columns["card_id.count_1d"]["settled"]["rows"] >= 200 and ref.score["young"]["needs_days"] == 60
    assert 9 < ref.columns["card_id.count_30d"]["young"]["history_days"] < 14

    x, reasons = read_rows(det, later, "later.csv")
    scores = det.score_matrix(x)[0]
    moved = x.assign(**{"card_id.since_last": x["card_id.since_last"] * 50 + 1e6,
                        "card_id.count_1d": x["card_id.count_1d"] + 40})
    res = compare_batch(ref, moved, scores * 10)
    young_move, settled_move = res["columns"]["card_id.since_last"], res["columns"]["card_id.count_1d"]
    assert young_move["psi"] > 1 and not young_move["alarm"] and young_move["young"]["needs_days"] == 30
    assert settled_move["psi"] > 1 and settled_move["alarm"] and "young" not in settled_move
    assert res["score"]["psi"] > 1 and not res["score"]["alarm"] and res["score"]["young"]
    assert "card_id.count_1d" in res["drifted_columns"] and not young & set(res["drifted_columns"])
    assert res["young_columns"] == sorted(young)

    run = monitor_frame(det, ref, later)
    cells = [str(c) for c in rich_table(run.summary).columns[4].cells]
    drifted = len(run.summary["windows"][0]["drifted_columns"])
    assert cells == [f"{drifted}/{len(ref.columns) - len(young)} ({len(young)} young)"]
    assert run.summary["reference"]["young_columns"] == sorted(young) and run.summary["reference"]["score_young"]
    hint = young_hint(ref)[0]
    assert hint == run.summary["hint"][0] and f"{len(young)} history column(s) and the score" in hint
    assert "need up to 60 days" in hint and "--reference" in hint

    from aedetect.training.workflow import young_reference_warning

    said = young_reference_warning(ref)  # what `train` warns of
    assert said.startswith("the validation rows have at most 9.") and f"{len(young)} history column(s)" in said
    assert young_reference_warning(None) is None

    from_file = reference_from_frame(det, later, "is_fraud", source="later.csv")
    assert set(from_file.columns) == set(ref.columns)  # the history columns computed from the raw log
    assert from_file.columns["card_id.count_1h"].get("young")  # 120 rows: too few settled ones


@pytest.mark.parametrize("examples", [6, pytest.param(60, marks=pytest.mark.slow)])
def test_schemathesis_all_checks_pass_on_a_label_aware_history_model(label_aware, examples):
    """A label-aware model with entity history: its request model (the time, entity and amount
    columns instead of the history ones) and /v1/labels hold the service's contract. A history
    model refuses two transactions with one id in a request (422), which JSON Schema cannot state,
    so /v1/score is spared only the "schema-valid data is accepted" check."""
    from contract import schemathesis_failures

    model, _ = label_aware
    failures = schemathesis_failures(create_app(model, ServiceSettings(max_batch=20)), {}, examples,
                                     semantic={("POST", "/v1/score")})
    assert not failures, "\n\n".join(failures)


def test_score_takes_verdicts_for_the_label_based_risk(label_aware, trained, tmp_path):
    """`aedetect score --labels verdicts.csv` on a file without its label column: the verdicts,
    found by transaction id, are the labels the risk counts, so the scores equal those of the
    file holding them as its label column; verdicts found by no row are warned about; a model
    without label-based risk refuses them."""
    from typer.testing import CliRunner

    from aedetect.cli.app import app

    model, later = label_aware
    cut = 400
    later.drop(columns="is_fraud").to_csv(tmp_path / "later.csv", index=False)
    pd.DataFrame({"transaction_id": later["transaction_id"][:cut],
                  "label": later["is_fraud"][:cut].astype(int)}).to_csv(tmp_path / "verdicts.csv", index=False)
    with_labels = later.drop(columns="fraud_kind").astype({"is_fraud": "float64"})
    with_labels.loc[cut:, "is_fraud"] = np.nan
    with_labels.to_csv(tmp_path / "labelled.csv", index=False)

    def score(*args, model=model):
        out = tmp_path / f"scored-{len(list(tmp_path.iterdir()))}.csv"
        res = CliRunner().invoke(app, ["score", "--model", str(model), "--out", str(out), *map(str, args)])
        return res, " ".join(res.output.split()), (pd.read_csv(out)["score"].to_numpy() if out.exists() else None)

    res, said, by_verdicts = score("--data", tmp_path / "later.csv", "--labels", tmp_path / "verdicts.csv")
    assert res.exit_code == 0, res.output
    assert f"verdicts: {cut} row(s) of the file given one of the {cut}, by column 'transaction_id'" in said
    assert "label-based risk" not in said
    _, _, by_column = score("--data", tmp_path / "labelled.csv")
    _, said, without = score("--data", tmp_path / "later.csv")
    assert "label-based risk" in said
    np.testing.assert_allclose(by_verdicts, by_column, rtol=1e-9)
    assert not np.allclose(by_verdicts, without, rtol=1e-6)
    res, said, _ = score("--data", tmp_path / "later.csv", "--labels", tmp_path / "verdicts.csv",
                         "--labels-id-column", "card_id")
    assert res.exit_code == 0 and "none matched" in said
    d, _, _ = trained
    res, said, _ = score("--data", tmp_path / "later.csv", "--labels", tmp_path / "verdicts.csv", model=d / "m")
    assert res.exit_code != 0 and "the model reads no labels" in str(res.exception)  # the CLI prints it: one line


def test_a_label_aware_history_model_exports_to_onnx_and_a_savedmodel(label_aware, tmp_path):
    """Both exports of a label-aware model with entity history take the history features and
    the label-based risk columns as inputs (computed by the caller, as `aedetect score`
    computes them) and give the runtime's fraud probability within EXPORT_RTOL."""
    import onnxruntime as ort

    from aedetect.data.schema import as_seconds
    from aedetect.serving.export import EXPORT_RTOL, export_onnx, input_dtypes
    from aedetect.serving.runtime import open_scorer

    model, later = label_aware
    hybrid = open_scorer(model)
    risk = hybrid.label_features
    assert risk
    table = add_history(later, hybrid.dataset_schema, hybrid.history_state_)[0]
    assert table[risk].to_numpy().max() > 0  # the state's labels reach these rows
    path = export_onnx(hybrid, tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    assert names == list(hybrid.feature_names_in_) and names[-len(risk):] == risk
    dtypes = {**input_dtypes(hybrid.detector), **{c: "float64" for c in risk}}
    feed = {c: (as_seconds(table[c]) if c == "timestamp" else table[c].to_numpy("float64")) for c in names}
    assert dtypes["timestamp"] == "float64"
    score, flag = sess.run(["score", "flag"], feed)
    want = hybrid.anomaly_score(table)
    assert np.max(np.abs(score - want) / want) <= EXPORT_RTOL
    np.testing.assert_array_equal(flag, (want > hybrid.threshold_).astype("int32"))
    # the SavedModel too (the head over the Keras autoencoder), through tf.saved_model.load
    import tensorflow as tf

    from aedetect.model.hybrid import open_model
    from aedetect.serving.export import _safe, export_savedmodel

    keras_side = open_model(model)
    signature = tf.saved_model.load(str(export_savedmodel(keras_side, tmp_path / "sm"))).signatures["serving_default"]
    out = signature(**{_safe(c): tf.constant(v) for c, v in feed.items()})
    assert np.max(np.abs(out["score"].numpy() - want) / want) <= EXPORT_RTOL
    np.testing.assert_array_equal(out["flag"].numpy(), flag)
