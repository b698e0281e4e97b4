"""The raw payments log (`generate_payment_log`): its frauds show only against each card's own
history, so a plain-amount baseline misses them and simple per-card history features find them."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from aedetect.data.generate import PAYMENT_KINDS, generate_payment_log

COLUMNS = ["transaction_id", "timestamp", "card_id", "terminal_id", "amount", "is_fraud",
           "fraud_kind"]


@pytest.fixture(scope="module")
def log():
    return generate_payment_log(seed=0)  # the defaults: 60 days, 2000 cards, 400 terminals


@pytest.fixture(scope="module")
def history(log):
    """Two features from each card's strictly earlier payments, as an entity-history step makes
    them: the amount over the card's mean so far, and the card's payments in the last 30 minutes."""
    by_card = log.groupby("card_id", sort=False)["amount"]
    earlier_mean = (by_card.cumsum() - log["amount"]) / by_card.cumcount()  # NaN on a first payment
    ts = pd.to_datetime(log["timestamp"], format="%Y-%m-%d %H:%M:%S")
    key = log["card_id"].str[1:].astype(int).to_numpy() * 1e8 + (ts - ts.min()).dt.total_seconds().to_numpy()
    order = np.argsort(key, kind="stable")
    k = key[order]
    recent = np.empty(len(log))
    recent[order] = np.arange(len(k)) - np.searchsorted(k, k - 1800.0, side="left")
    return pd.DataFrame({"amount_ratio": (log["amount"] / earlier_mean).fillna(1.0),
                         "card_last_30min": recent})


def _auc(log, score, kind=None):
    """ROC-AUC of `score` for the frauds (of one kind) against all normal payments."""
    rows = (log["is_fraud"] == 0) | (log["fraud_kind"] == kind) if kind else log["is_fraud"] >= 0
    return roc_auc_score(log["is_fraud"][rows], np.asarray(score)[rows.to_numpy()])


def test_payment_log_has_raw_columns_sorted_by_time(log):
    assert list(log.columns) == COLUMNS  # no pre-computed behaviour columns
    assert 140_000 < len(log) < 200_000
    assert log["timestamp"].is_monotonic_increasing
    assert pd.to_datetime(log["timestamp"], format="%Y-%m-%d %H:%M:%S").notna().all()
    assert log["transaction_id"].is_unique
    assert log["card_id"].str.fullmatch(r"c\d{6}").all()
    assert log["terminal_id"].str.fullmatch(r"t\d{5}").all()
    assert (log["amount"] > 0).all() and np.allclose(log["amount"], log["amount"].round(2))
    assert log["is_fraud"].dtype == np.int8
    assert (log["fraud_kind"].notna() == (log["is_fraud"] == 1)).all()


def test_payment_log_is_deterministic_for_a_seed():
    small = dict(n_days=14, n_cards=200, n_terminals=40, fraud_rate=0.02)
    a = generate_payment_log(seed=7, **small)
    assert a.equals(generate_payment_log(seed=7, **small))
    assert not a.equals(generate_payment_log(seed=8, **small))


@pytest.mark.parametrize("rate", [0.005, 0.02])
def test_each_kind_is_planted_equally_at_the_requested_share(log, rate):
    df = log if rate == 0.005 else generate_payment_log(n_days=30, n_cards=1000, seed=1, fraud_rate=rate)
    counts = df["fraud_kind"].value_counts()
    assert set(counts.index) == set(PAYMENT_KINDS)
    assert counts.max() - counts.min() <= 0.1 * counts.mean()
    assert abs(df["is_fraud"].mean() - rate) < 0.1 * rate


def test_no_frauds_at_rate_zero():
    df = generate_payment_log(n_days=14, n_cards=200, n_terminals=40, fraud_rate=0.0)
    assert df["is_fraud"].sum() == 0 and df["fraud_kind"].isna().all()


def test_cards_have_their_own_amounts_and_terminals(log):
    normal = log[log["is_fraud"] == 0]
    medians = normal.groupby("card_id")["amount"].median()
    assert medians.quantile(0.9) / medians.quantile(0.1) >= 3.0
    # Most of a card's payments go to its few home terminals.
    per_pair = normal.groupby(["card_id", "terminal_id"]).size()
    top5 = per_pair.groupby(level=0).apply(lambda s: s.nlargest(5).sum() / s.sum())
    assert top5.median() > 0.8


def test_amount_alone_does_not_separate_fraud(log):
    assert 0.3 < _auc(log, log["amount"]) < 0.7


def test_card_history_separates_compromised_cards(log, history):
    by_history = _auc(log, history["amount_ratio"], "compromised_card")
    assert by_history > 0.8
    assert by_history > _auc(log, log["amount"], "compromised_card") + 0.05


@pytest.mark.parametrize("kind, feature, floor", [
    ("account_takeover", "amount_ratio", 0.8),
    ("compromised_terminal", "amount_ratio", 0.75),
    ("card_testing", "card_last_30min", 0.8),
])
def test_each_kind_shows_in_a_history_feature(log, history, kind, feature, floor):
    assert _auc(log, history[feature], kind) > floor


@pytest.mark.parametrize("args", [dict(n_days=3), dict(n_cards=10), dict(n_terminals=5),
                                  dict(fraud_rate=0.5), dict(fraud_rate=-0.1)])
def test_payment_log_rejects_bad_arguments(args):
    with pytest.raises(ValueError, match="must be"):
        generate_payment_log(**args)


def test_data_generate_writes_the_payments_kind(tmp_path):
    from typer.testing import CliRunner

    from aedetect.cli.app import app

    out = tmp_path / "payments.csv"
    args = ["data", "generate", "--kind", "payments", "--days", "14", "--cards", "200",
            "--terminals", "40", "--fraud-rate", "0.02", "--seed", "3", "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    written = pd.read_csv(out, dtype={"transaction_id": str, "card_id": str, "terminal_id": str})
    expected = generate_payment_log(n_days=14, n_cards=200, n_terminals=40, seed=3, fraud_rate=0.02)
    assert list(written.columns) == COLUMNS and len(written) == len(expected)
    assert (written["is_fraud"].to_numpy() == expected["is_fraud"].to_numpy()).all()
    # The size options belong to their kinds.
    res = CliRunner().invoke(app, ["data", "generate", "--kind", "payments", "--rows", "100", "--out", str(out)])
    assert res.exit_code != 0 and "--rows does not apply" in str(res.exception)
    res = CliRunner().invoke(app, ["data", "generate", "--days", "10", "--out", str(out)])
    assert res.exit_code != 0 and "--kind creditcard takes no --days" in str(res.exception)
