"""Issue 20, on a table shaped like a public simulated card-payments log (TRANSACTION_ID,
TX_DATETIME, CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT, TX_TIME_SECONDS, TX_TIME_DAYS, TX_FRAUD):
upper-case ids, monotone time counters, weekday features from less than a week, a flagged share
far off the promise (at scoring and at training), and training on one period, testing on the next."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aedetect.data.infer import infer_schema
from aedetect.data.io import write_table
from aedetect.data.schema import DAY, WEEK
from aedetect.model.preprocessing import Preprocessor

START = pd.Timestamp("2018-04-04")  # a Wednesday


def card_log(n: int = 1200, days: float = 5.0, seed: int = 0, fraud_rate: float = 0.02,
             start: pd.Timestamp = START, first_day: int = 0) -> pd.DataFrame:
    """`n` payments over `days` days from day `first_day`, in time order, like the simulated log;
    frauds are large amounts."""
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.uniform(0, days * DAY, n)).round() + first_day * DAY
    fraud = (rng.random(n) < fraud_rate).astype(int)
    amount = np.round(rng.gamma(2.0, 25.0, n) * np.where(fraud == 1, 8.0, 1.0), 2)
    return pd.DataFrame({
        "TRANSACTION_ID": np.arange(n) + first_day * 10_000,
        "TX_DATETIME": (start + pd.to_timedelta(seconds, unit="s")).strftime("%Y-%m-%d %H:%M:%S"),
        "CUSTOMER_ID": rng.integers(0, 300, n),
        "TERMINAL_ID": rng.integers(0, 500, n),
        "TX_AMOUNT": amount,
        "TX_TIME_SECONDS": seconds.astype("int64"),
        "TX_TIME_DAYS": (seconds // DAY).astype("int64"),
        "TX_FRAUD": fraud,
    })


def schema_of(df: pd.DataFrame):
    return infer_schema(df, label_column="TX_FRAUD")  # not named like a label


def test_upper_case_id_columns_are_ids():
    s = schema_of(card_log())
    assert {"TRANSACTION_ID", "CUSTOMER_ID", "TERMINAL_ID"} <= set(s.ids)
    for name in ("CustomerId", "terminal_KEY", "UUID", "ID"):
        t = infer_schema(pd.DataFrame({name: np.arange(40) % 13, "x": np.arange(40.0) % 7,
                                       "y": np.linspace(0, 1, 40) ** 2 % 0.3}))
        assert t.column(name).role == "id", name


def test_monotone_time_counters_are_excluded():
    s = schema_of(card_log())
    assert s.time == "TX_DATETIME"
    for name in ("TX_TIME_SECONDS", "TX_TIME_DAYS"):  # the days: 5 values, once one-hot
        assert s.column(name).role == "excluded", name
        assert "monotone counter" in s.column(name).note
    # Shuffled rows: still a counter, by its rank correlation with the time column.
    shuffled = schema_of(card_log().sample(frac=1.0, random_state=0))
    assert shuffled.column("TX_TIME_SECONDS").role == "excluded"
    assert shuffled.column("TX_TIME_DAYS").role == "excluded"
    assert set(s.features) == {"TX_DATETIME", "TX_AMOUNT"}


def test_a_datetime_spanning_less_than_two_weeks_gets_the_hour_of_day_only():
    short = schema_of(card_log(days=5))
    assert short.column("TX_DATETIME").periods == [DAY]
    assert [b["periods"] for b in Preprocessor.from_schema(short).blocks if b.get("datetime")] == [[DAY]]
    long = schema_of(card_log(n=2000, days=20))
    assert long.column("TX_DATETIME").periods == [DAY, WEEK]
    # A stored schema that names no periods reads a datetime by the day and the week, as before.
    old = long.model_copy(deep=True)
    old.column("TX_DATETIME").periods = None
    assert [b["periods"] for b in Preprocessor.from_schema(old).blocks if b.get("datetime")] == [[DAY, WEEK]]


def run(*args, code: int = 0) -> str:
    """The command line in this process; returns what it printed."""
    from typer.testing import CliRunner

    from aedetect.cli.app import app

    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == code, res.output
    return res.output


SMALL = ("--epochs", 2, "--hidden-units", "8,4,8", "--set", "batch_size=64")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained on days 0-5 of the log and tested on days 5-10 (--test-data)."""
    d = tmp_path_factory.mktemp("card-log")
    first, later = card_log(seed=1), card_log(seed=2, first_day=5)
    write_table(first, d / "first.csv")
    write_table(later, d / "later.csv")
    out = run("train", "--data", d / "first.csv", "--test-data", d / "later.csv",
              "--label-column", "TX_FRAUD", "--out", d / "model", *SMALL)
    return d, later, out


def test_train_on_one_period_and_test_on_the_next(trained):
    import json

    d, later, out = trained
    flat = " ".join(out.split())
    assert f"test file {d / 'later.csv'} (1,200 rows;" in flat
    assert "trained and threshold chosen on every row (its earliest 90% train, its latest 10% choose)" in flat
    assert f"test rows / anomalies │ {len(later):,} / {int(later['TX_FRAUD'].sum())} │" in flat
    meta = json.loads((d / "model" / "manifest.json").read_text())["metadata"]
    assert meta["test_data"]["rows"] == len(later)
    assert meta["test_data"]["metrics"]["n_test"] == len(later)
    assert meta["protocol"] == "time"  # a time column: the split is time-ordered by default
    # the test file is the test: no row of the training file is left unused (90% train, the
    # latest 10% choose), and `evaluate --rows test` cannot find test rows there
    from aedetect.model.detector import load_detector

    det = load_detector(d / "model")
    n = 1_200  # card_log's rows
    assert det.split_["sizes"]["test"] == 0 and det.split_["sizes"]["selection"] == round(0.1 * n)
    assert det.split_["test_data"] == str(d / "later.csv")
    from typer.testing import CliRunner

    from aedetect.cli.app import app

    res = CliRunner().invoke(app, [str(a) for a in ("evaluate", "--model", d / "model", "--data", d / "first.csv",
                                                    "--out", d / "m.json")])
    from aedetect.errors import AedetectError  # a user's mistake: main() prints it as one line

    assert isinstance(res.exception, AedetectError), res.output
    assert "tested on another file" in str(res.exception) and "--rows all" in str(res.exception)


def test_scoring_warns_when_the_flagged_share_is_far_over_the_promise(trained):
    d, later, _ = trained
    shifted = later.assign(TX_AMOUNT=later["TX_AMOUNT"] * 1000)  # every amount out of range
    write_table(shifted, d / "shifted.csv")
    out = run("score", "--model", d / "model", "--data", d / "shifted.csv", "--out", d / "s.csv")
    flat = " ".join(out.split())
    assert "warning: flagged" in flat and "times the" in flat and "TX_AMOUNT (" in flat
    run("score", "--model", d / "model", "--data", d / "shifted.csv", "--out", d / "s.csv",
        "--fail-on-drift", "--overwrite", code=3)
    calm = run("score", "--model", d / "model", "--data", d / "later.csv", "--out", d / "c.csv",
               "--fail-on-drift")
    assert "times the" not in " ".join(calm.split())


def test_training_warns_when_the_selection_window_flags_far_more_than_promised():
    from aedetect.training.config import TrainConfig
    from aedetect.training.workflow import train_detector

    df = card_log(n=1500, seed=3)
    late = np.arange(len(df)) >= int(0.7 * len(df))  # the selection window and the test rows
    df.loc[late, "TX_AMOUNT"] *= 1000
    schema = schema_of(df)
    config = TrainConfig(protocol="time", epochs=2, hidden_units=[8, 4, 8], batch_size=64)
    result = train_detector(df, config, schema)
    assert result.split.protocol == "time"
    warnings = " ".join(result.detector.threshold.warnings)
    assert "the selection window: flagged" in warnings and "TX_AMOUNT" in warnings


def test_a_rule_only_promise_does_not_call_labelled_frauds_meaningless():
    """A folder without a reference profile (label-aware ones) promises the rule's share of
    normal rows; a file holding frauds may exceed it, and the warning says both readings."""
    from aedetect.model.thresholds import Threshold
    from aedetect.monitoring.reference import promised_share, share_warning

    promise = promised_share(None, Threshold("normal_percentile", 5.0, {"q": 99.9}))
    text = share_warning(185, 4000, promise, {"merchant_country": 82})
    assert "promised for normal rows" in text and "either the data holds that many anomalies" in text
    assert "mean little" not in text


def test_evaluate_finds_the_test_window_of_a_set_test_share(tmp_path):
    """`--set test_share=0.3`: the model folder records it, and `evaluate` cuts the same latest
    30% of rows as its test rows (not the default 20%); `test_share=0` keeps none to evaluate."""
    import json

    df = card_log(seed=4)
    write_table(df, tmp_path / "log.csv")
    run("train", "--data", tmp_path / "log.csv", "--label-column", "TX_FRAUD", "--out", tmp_path / "m",
        "--set", "test_share=0.3", *SMALL)
    run("evaluate", "--model", tmp_path / "m", "--data", tmp_path / "log.csv", "--out", tmp_path / "m.json")
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["n_test"] == len(df) - round(0.7 * len(df))
    run("train", "--data", tmp_path / "log.csv", "--label-column", "TX_FRAUD", "--out", tmp_path / "none",
        "--set", "test_share=0", *SMALL)
    from aedetect.model.detector import load_detector

    assert load_detector(tmp_path / "none").split_["sizes"]["test"] == 0
