"""Verdicts out (issue 21): the review store's verdicts, exported or read from its database, are
joined to the training data by transaction id (as text) and train the label-aware head; `monitor`
gives each window's precision among its flagged rows that were reviewed, and no recall."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from aedetect.cli.app import app
from aedetect.cli.common import UsageError
from aedetect.data.generate import generate_transactions
from aedetect.data.infer import infer_schema
from aedetect.data.labels import join_labels, read_labels
from aedetect.errors import DataError

pytest.importorskip("sqlalchemy")
pytest.importorskip("alembic")

FAST = ["--epochs", "2", "--hidden-units", "16,6,16", "--set", "batch_size=256"]


def alert(tx: str) -> dict:
    return {"transaction_id": tx, "transaction": {}, "score": 2.0, "threshold": 1.0, "amount": None,
            "model_id": "m", "model_version": "v", "reasons": [], "top_reason": None, "entity": None,
            "history": None}


def fill_store(url: str, verdicts: dict[str, str]):
    """A review store whose alerts (one per transaction id) a lead has decided as `verdicts` says."""
    from aedetect.review.store import AlertStore

    store = AlertStore(url)
    lead = store.user_by_token(store.add_user("ann", "lead", "password1"))
    store.add_alerts([alert(tx) for tx in verdicts])
    while (a := store.claim_next(lead)) is not None:
        store.decide(a["id"], lead, verdicts[a["transaction_id"]], "checked")
    return store


def invoke(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory):
    """3,000 generated transactions with ids written with leading zeros (no label column in the
    file); a store where every fraud was decided fraud, 30 normal rows legit, one alert unsure,
    and two decided transactions are not in the file; its export."""
    d = tmp_path_factory.mktemp("verdicts")
    df = generate_transactions(3000, fraud_rate=0.02, seed=3)
    df.insert(0, "transaction_id", [f"{i:06d}" for i in range(len(df))])
    rng = np.random.default_rng(0)
    frauds = df["transaction_id"][df["Class"] == 1].tolist()
    normal = rng.choice(df["transaction_id"][df["Class"] == 0].to_numpy(), 31, replace=False).tolist()
    verdicts = {**dict.fromkeys(frauds, "fraud"), **dict.fromkeys(normal[:30], "legit"),
                normal[30]: "unsure", "999999": "fraud", "42": "legit"}
    url = f"sqlite:///{d}/alerts.db"
    fill_store(url, verdicts)
    df.drop(columns="Class").to_csv(d / "data.csv", index=False)
    res = invoke("alerts", "export", "--db", url, "--out", d / "labels.csv")
    assert res.exit_code == 0, res.output
    return {"dir": d, "df": df, "url": url, "labels": d / "labels.csv", "frauds": frauds, "legit": normal[:30]}


def saved_metadata(model) -> dict:
    return json.loads((model / "manifest.json").read_text())["metadata"]


def test_export_then_train_use_labels_learns_from_the_verdicts(reviewed):
    """`alerts export` -> `train --use-labels --labels`: the file has no label column, so the
    verdicts fill a new one ('label', 0 where unreviewed); the head learns from exactly the
    fraud verdicts of its rows, and the model folder records the join."""
    from aedetect.data.splits import split_table
    from aedetect.model.hybrid import label_rows

    d, df = reviewed["dir"], reviewed["df"]
    labels = pd.read_csv(reviewed["labels"], dtype=str)
    assert len(labels) == 60 + 30 + 2  # "unsure" is no label
    assert set(reviewed["frauds"]) <= set(labels["transaction_id"])  # ids as written: 000123
    model = d / "hybrid"
    res = invoke("train", "--data", d / "data.csv", "--out", model, "--use-labels", "--labels",
                 reviewed["labels"], *FAST)
    assert res.exit_code == 0, res.output
    assert "labels: 90 of 92" in res.output and "60 fraud, 30 legit" in res.output
    assert "2 of the 92 labels match no row" in res.output and "'999999'" in res.output
    meta = saved_metadata(model)["labels"]
    assert meta == {**meta, "source": str(reviewed["labels"]), "id_column": "transaction_id",
                    "label_column": "label", "added_column": True, "labels": 92, "matched": 90,
                    "unmatched": 2, "rows": 90, "fraud_rows": 60, "legit_rows": 30,
                    "rows_without_verdict": len(df) - 90}
    assert sorted(meta["unmatched_ids"]) == ["42", "999999"]
    # The head's rows and the calibration rows of the split `train` made, with the joined labels:
    # every fraud is reviewed here, so the joined label is the generator's Class.
    joined = df.rename(columns={"Class": "label"})
    split = split_table(joined, infer_schema(joined), "time", 0)
    fit, cal = label_rows(split, len(joined))
    hybrid = json.loads((model / "hybrid.json").read_text())
    assert hybrid["mode"] == "supervised head"
    assert hybrid["rows"]["train_anomalies"] == int(joined["label"].to_numpy()[fit].sum()) > 20
    assert hybrid["rows"]["calibration_anomalies"] == int(joined["label"].to_numpy()[cal].sum())


def test_verdicts_on_the_latest_rows_only_need_no_test_window(reviewed, tmp_path):
    """The usual loop: last week's alerts were reviewed, so every verdict sits on the latest
    rows, which the time protocol's test window holds. Training says where they went and how to
    learn from them; with `--set test_share=0` the head does, and no test rows are claimed."""
    d, df = reviewed["dir"], reviewed["df"]
    labels = pd.read_csv(reviewed["labels"], dtype=str)
    late = set(df["transaction_id"].iloc[int(0.85 * len(df)):])  # within the latest 20% in time
    labels[labels["transaction_id"].isin(late)].to_csv(tmp_path / "late.csv", index=False)
    n_late = int(df[df["transaction_id"].isin(late)]["Class"].sum())
    assert n_late >= 3
    res = invoke("train", "--data", d / "data.csv", "--out", tmp_path / "m", "--use-labels", "--labels",
                 tmp_path / "late.csv", *FAST)
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    assert "0 labelled anomalies in the training rows" in flat
    assert f"{n_late} more are in the test window" in flat and "--set test_share=0" in flat
    res = invoke("train", "--data", d / "data.csv", "--out", tmp_path / "all", "--use-labels", "--labels",
                 tmp_path / "late.csv", "--set", "test_share=0", *FAST)
    assert res.exit_code == 0, res.output
    hybrid = json.loads((tmp_path / "all" / "hybrid.json").read_text())
    rows = hybrid["rows"]
    assert hybrid["mode"] == "supervised head" and rows["train_anomalies"] + rows["calibration_anomalies"] == n_late
    from aedetect.model.hybrid import HybridDetector

    sizes = HybridDetector.load(tmp_path / "all").detector.split_["sizes"]
    assert sizes["test"] == 0 and sizes["selection"] == round(0.1 * len(df))


def test_labels_db_gives_the_same_join(reviewed):
    """--labels-db reads the store itself: the same labels, the same join, as the export's."""
    from aedetect.review.store import AlertStore

    d, df = reviewed["dir"], reviewed["df"].drop(columns="Class")
    schema = infer_schema(df)
    from_file = join_labels(df, schema, read_labels(reviewed["labels"]))
    from_db = join_labels(df, schema, AlertStore(reviewed["url"], migrate=False).labels())
    pd.testing.assert_frame_equal(from_file.data, from_db.data)
    assert from_file.summary == from_db.summary and from_file.schema == from_db.schema
    # and through `train` (without --use-labels: the verdicts label the split, the threshold and the test)
    model = d / "ae"
    res = invoke("train", "--data", d / "data.csv", "--out", model, "--labels-db", reviewed["url"], *FAST)
    assert res.exit_code == 0, res.output
    assert saved_metadata(model)["labels"] == {**from_file.summary, "source": f"sqlite:///{d}/alerts.db"}
    assert saved_metadata(model)["split_sizes"]["test"] > 0  # a labelled split


def test_a_verdict_overrides_the_files_label(reviewed):
    """With a label column, a verdict replaces that row's label; rows without one keep theirs."""
    df = reviewed["df"]
    fraud, legit = reviewed["frauds"][0], reviewed["legit"][0]
    labels = pd.DataFrame({"transaction_id": [fraud, legit], "label": [0, 1]})  # both reversed
    join = join_labels(df, infer_schema(df), labels)
    assert join.summary["label_column"] == "Class" and not join.summary["added_column"]
    assert join.summary["changed_rows"] == 2
    expected = df["Class"].to_numpy().copy()
    expected[(df["transaction_id"] == fraud).to_numpy()] = 0
    expected[(df["transaction_id"] == legit).to_numpy()] = 1
    np.testing.assert_array_equal(join.data["Class"].to_numpy(), expected)


def test_ids_compare_as_written_and_a_mismatch_is_a_clear_error(reviewed, tmp_path):
    """Ids are text: '000042' is not '42'. No label id in the data: one line naming the file, the
    column and ids of both sides, exit 1, no model folder; a wrong id column or a label file
    without its columns, likewise."""
    d = reviewed["dir"]
    bad = tmp_path / "labels.csv"
    bad.write_text("transaction_id,label\n42,1\n7,0\n")  # the file's ids are 000042, 000007
    model = tmp_path / "m"
    res = invoke("train", "--data", d / "data.csv", "--out", model, "--use-labels", "--labels", bad, *FAST)
    assert res.exit_code == 1 and isinstance(res.exception, DataError), res.output
    msg = str(res.exception)
    assert msg.startswith(f"{bad}: none of its 2 transaction ids is in column 'transaction_id' of "
                          f"{d / 'data.csv'}") and "'42', '7'" in msg and "'000000'" in msg
    assert "--labels-id-column" in msg and not model.exists()
    res = invoke("train", "--data", d / "data.csv", "--out", model, "--labels", reviewed["labels"],
                 "--labels-id-column", "tx", *FAST)
    assert res.exit_code == 1 and "no column 'tx' (--labels-id-column)" in str(res.exception)
    bad.write_text("id,verdict\n000042,fraud\n")
    with pytest.raises(DataError, match="missing column.*'transaction_id', 'label'"):
        read_labels(bad)
    res = invoke("train", "--data", d / "data.csv", "--out", model, "--labels", reviewed["labels"],
                 "--labels-db", reviewed["url"], *FAST)
    assert isinstance(res.exception, UsageError) and "pass one" in str(res.exception)
    res = invoke("train", "--data", d / "data.csv", "--out", model, "--labels-db", f"sqlite:///{tmp_path}/no.db")
    assert isinstance(res.exception, UsageError) and "no such database file" in str(res.exception)
    assert not (tmp_path / "no.db").exists()


def test_monitor_precision_from_verdicts(reviewed, tmp_path):
    """`monitor --labels-db`, a file without labels: among the flagged rows that were reviewed,
    precision = fraud / (fraud + legit); unreviewed flagged rows and verdicts on rows that were
    not flagged do not count; recall is not computed, and the output says why."""
    from aedetect.model.hybrid import open_model

    d = reviewed["dir"]
    if not (d / "ae").exists():  # the model of test_labels_db_gives_the_same_join
        assert invoke("train", "--data", d / "data.csv", "--out", d / "ae", "--labels-db", reviewed["url"],
                      *FAST).exit_code == 0
    det = open_model(d / "ae")
    new = generate_transactions(600, fraud_rate=0.05, seed=11).drop(columns="Class")
    new.insert(0, "transaction_id", [f"new{i}" for i in range(len(new))])
    flagged = det.anomaly_score(new.drop(columns="transaction_id")) > det.threshold_
    ids = new["transaction_id"].to_numpy()
    assert flagged.sum() >= 5
    f, quiet = ids[flagged], ids[~flagged]
    # 3 fraud and 1 legit among the flagged; the rest of the flagged unreviewed; an unflagged
    # row decided fraud, and a transaction of another file, are not counted.
    url = f"sqlite:///{tmp_path}/alerts.db"
    fill_store(url, {f[0]: "fraud", f[1]: "fraud", f[2]: "fraud", f[3]: "legit", f[4]: "unsure",
                     quiet[0]: "fraud", "elsewhere": "legit"})
    new.to_csv(tmp_path / "new.csv", index=False)
    res = invoke("monitor", "--model", d / "ae", "--data", tmp_path / "new.csv", "--labels-db", url,
                 "--out", tmp_path / "drift.json", "--min-rows", "10")
    assert res.exit_code in (0, 3, 4), res.output
    (w,) = json.loads((tmp_path / "drift.json").read_text())["windows"]
    assert w["verdicts"] == {**w["verdicts"], "flagged": int(flagged.sum()), "reviewed": 4, "fraud": 3,
                             "legit": 1, "precision": 0.75, "recall": None}
    assert w["verdicts"]["reviewed_share"] == pytest.approx(4 / flagged.sum())
    assert "precision from verdicts" in res.output and f"0.75 (3/4; {100 * 4 / flagged.sum():.2f}% reviewed)" \
        in res.output
    assert "recall from verdicts: not computed: only flagged rows are reviewed" in res.output
    # --labels FILE: the same numbers
    res = invoke("alerts", "export", "--db", url, "--out", tmp_path / "labels.csv")
    res = invoke("monitor", "--model", d / "ae", "--data", tmp_path / "new.csv", "--labels",
                 tmp_path / "labels.csv", "--id-column", "transaction_id", "--json", "--min-rows", "10")
    assert json.loads(res.stdout)["windows"][0]["verdicts"] == w["verdicts"]
