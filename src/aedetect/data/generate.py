"""Generated data with a known share of anomalies, three kinds:

- `generate_transactions`: the credit-card schema. Normal rows lie near a curved low-dimensional
  manifold (like real transactions, whose PCA components are uncorrelated but not independent);
  anomalies are pushed off it, at other hours and with other amounts. Used by the tests and as
  the offline fallback of the demo.
- `generate_transaction_log`: a flat transactions table with categories, missing values and
  per-customer aggregates, where each fraud shows in its own row (`FRAUD_KINDS`).
- `generate_payment_log`: a raw log (card_id, terminal_id, amount, no behaviour columns) where
  fraud shows only against each card's or terminal's own history (`PAYMENT_KINDS`):
  compromised_card (for 2-7 days, extra payments at 3-5 times the card's usual amount at
  terminals it never used), card_testing (5-15 payments of 0.50-3.00 within minutes at new
  terminals, maybe then a large one), compromised_terminal (for 1-4 days every payment at one
  terminal, from many cards, moderately above its usual amount) and account_takeover (a few
  large payments in one day at a new terminal, at an hour far from the card's usual ones).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from aedetect.data.creditcard import AMOUNT, CREDITCARD, LABEL, PCA_COLUMNS, TIME, TIME_SPAN

LATENT = 6


def generate_transactions(
    n_rows: int = 50_000, fraud_rate: float = 0.01, seed: int = 0
) -> pd.DataFrame:
    """Return `n_rows` rows: Time, V1..V28, Amount, Class, with round(n_rows*fraud_rate) frauds."""
    if n_rows < 10:
        raise ValueError(f"n_rows must be at least 10; got {n_rows}")
    if not 0.0 <= fraud_rate < 0.5:
        raise ValueError(f"fraud_rate must be in [0, 0.5); got {fraud_rate!r}")
    structure = np.random.default_rng(12345)  # the manifold is the same for every seed
    w1 = structure.normal(size=(LATENT, 16)) / np.sqrt(LATENT)
    w2 = structure.normal(size=(16, 28)) / 2.0
    rng = np.random.default_rng(seed)
    n_fraud = int(round(n_rows * fraud_rate))
    n_normal = n_rows - n_fraud

    z = rng.normal(size=(n_normal, LATENT))
    v = np.tanh(z @ w1) @ w2 + 0.15 * rng.normal(size=(n_normal, 28))
    amount = np.exp(3.0 + 0.8 * z[:, 0] + 0.5 * rng.normal(size=n_normal))
    hours = np.clip(rng.normal(14.0, 4.0, size=n_normal), 0, 23.99)

    zf = rng.normal(size=(n_fraud, LATENT))
    vf = np.tanh(zf @ w1) @ w2
    # Off-manifold push of varying strength: some anomalies are subtle, most are clear.
    strength = rng.gamma(2.0, 1.0, size=(n_fraud, 1))
    direction = rng.normal(size=(n_fraud, 28))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    vf = vf + strength * 2.0 * direction + 0.15 * rng.normal(size=(n_fraud, 28))
    amount_f = np.where(rng.random(n_fraud) < 0.5, rng.uniform(0.5, 5.0, n_fraud),
                        np.exp(rng.normal(5.5, 1.0, n_fraud)))
    hours_f = rng.uniform(0, 24, size=n_fraud)

    v_all = np.vstack([v, vf])
    hour_all = np.concatenate([hours, hours_f])
    day = rng.integers(0, 2, size=n_rows)
    time = np.clip(day * 86400.0 + hour_all * 3600.0, 0, TIME_SPAN)
    frame = pd.DataFrame(v_all, columns=list(PCA_COLUMNS))
    frame.insert(0, TIME, np.round(time))
    frame[AMOUNT] = np.round(np.concatenate([amount, amount_f]), 2)
    frame[LABEL] = np.concatenate([np.zeros(n_normal, "int8"), np.ones(n_fraud, "int8")])
    frame = frame.sample(frac=1.0, random_state=seed).sort_values(TIME, kind="stable")
    return frame.reset_index(drop=True)[CREDITCARD.names]


# -- a transactions table with categories, missing values and planted fraud of known kinds ----
FRAUD_KINDS = ("unusual_amount", "unseen_pair", "burst", "night", "new_device")
CATEGORIES = {  # merchant category: (share of transactions, log-amount offset)
    "grocery": (0.22, 0.0), "restaurant": (0.16, -0.2), "fuel": (0.10, 0.3),
    "fashion": (0.08, 0.5), "pharmacy": (0.07, -0.3), "entertainment": (0.07, 0.0),
    "online_services": (0.09, -0.8), "electronics": (0.06, 1.2), "travel": (0.05, 1.5),
    "utilities": (0.05, 0.8), "jewelry": (0.02, 1.6), "gambling": (0.03, 0.4),
}
COUNTRIES = {"US": 0.40, "GB": 0.12, "DE": 0.10, "FR": 0.09, "ES": 0.07, "IT": 0.06, "NL": 0.05,
             "CA": 0.05, "BR": 0.03, "IN": 0.03}
HOURLY = np.array([0.2, 0.1, 0.08, 0.08, 0.1, 0.3, 0.8, 1.5, 2.0, 2.2, 2.3, 2.5,
                   3.0, 2.6, 2.3, 2.3, 2.5, 2.8, 3.0, 2.8, 2.2, 1.5, 0.9, 0.5])
START = np.datetime64("2024-03-04T00:00:00")  # a Monday
WEEKS = 6
BURST = 8  # transactions in one burst


def _pick(rng, table: dict, n: int, p=None) -> np.ndarray:
    keys = list(table)
    w = np.array([v[0] if isinstance(v, tuple) else v for v in table.values()]) if p is None else p
    return np.asarray(keys, dtype=object)[rng.choice(len(keys), size=n, p=w / w.sum())]


def generate_transaction_log(n_rows: int = 50_000, fraud_rate: float = 0.01,
                             seed: int = 0) -> pd.DataFrame:
    """A card-transactions table as a fraud team keeps one: ids, timestamps over six weeks with
    daily and weekly cycles, customers and merchants with categorical attributes, amounts,
    per-customer aggregates, missing values, an `is_fraud` label and `fraud_kind`.

    Normal behaviour: each customer has a home country, a card type, a usual device and a typical
    spend; each merchant a category and a country, and each category trades in a few countries
    only. Frauds, an equal share of each kind in `FRAUD_KINDS`:
      unusual_amount  8-40 times the customer's average amount
      unseen_pair     a merchant category in a country where no such merchant trades
      burst           8 small online payments by one customer within ten minutes
      night           an online payment between 01:00 and 05:00, otherwise ordinary
      new_device      an online payment from a device first seen today, of another type
    """
    if n_rows < 100:
        raise ValueError(f"n_rows must be at least 100 for the transactions kind; got {n_rows}")
    if not 0.0 <= fraud_rate < 0.5:
        raise ValueError(f"fraud_rate must be in [0, 0.5); got {fraud_rate!r}")
    rng = np.random.default_rng(seed)
    countries = list(COUNTRIES)
    # Customers.
    n_cust = max(50, n_rows // 40)
    c_country = _pick(rng, COUNTRIES, n_cust)
    c_card = rng.choice(np.array(["debit", "credit", "prepaid"], dtype=object), n_cust, p=[.55, .4, .05])
    c_level = rng.normal(3.3, 0.6, n_cust)
    c_device = rng.choice(np.array(["ios", "android", "web"], dtype=object), n_cust, p=[.45, .4, .15])
    c_device_age = rng.exponential(400.0, n_cust)
    c_age = np.round(rng.uniform(20, 3650, n_cust))
    # Merchants: each category trades in 3-5 countries (always including the US).
    allowed = {cat: ["US", *rng.choice(countries[1:], rng.integers(2, 5), replace=False)]
               for cat in CATEGORIES}
    n_merch = max(60, n_rows // 150)
    m_cat = _pick(rng, CATEGORIES, n_merch)
    m_country = np.array([rng.choice(allowed[c]) for c in m_cat], dtype=object)
    # Normal transactions.
    cust = rng.integers(0, n_cust, n_rows)
    cat = _pick(rng, CATEGORIES, n_rows)
    # A merchant of the drawn category: in the customer's country (85%, when there is one) or any.
    cat_code = pd.Categorical(cat, categories=list(CATEGORIES)).codes
    country_code = pd.Categorical(c_country[cust], categories=countries).codes
    m_cat_code = pd.Categorical(m_cat, categories=list(CATEGORIES)).codes
    m_country_code = pd.Categorical(m_country, categories=countries).codes
    local = _draw_from_groups(rng, m_cat_code * 100 + m_country_code, cat_code * 100 + country_code)
    anywhere = _draw_from_groups(rng, m_cat_code, cat_code)
    merch = np.where((local >= 0) & (rng.random(n_rows) < 0.85), local, anywhere)
    day = rng.choice(7 * WEEKS, n_rows, p=_day_weights())
    seconds = day * 86_400.0 + rng.choice(24, n_rows, p=HOURLY / HOURLY.sum()) * 3600.0 \
        + rng.uniform(0, 3600, n_rows)
    online_share = np.where(cat == "online_services", 1.0, np.where(np.isin(cat, ["fuel", "grocery"]), 0.05, 0.25))
    online = rng.random(n_rows) < online_share
    channel = np.where(online, "online", np.where(rng.random(n_rows) < 0.4, "contactless", "chip"))
    offsets = np.array([CATEGORIES[c][1] for c in cat])
    amount = np.exp(c_level[cust] + offsets + rng.normal(0, 0.55, n_rows))
    device = np.where(online, c_device[cust], "pos_terminal").astype(object)
    device_age = np.where(online, np.floor(c_device_age[cust] * rng.uniform(0.9, 1.0, n_rows)), np.nan)
    new_device = online & (rng.random(n_rows) < 0.02)  # honest customers change phones too
    device_age[new_device] = 0.0
    frame = pd.DataFrame({
        "customer": cust, "merchant": merch, "merchant_category": cat,
        "merchant_country": m_country[merch], "customer_country": c_country[cust],
        "channel": channel.astype(object), "card_type": c_card[cust], "device": device,
        "device_age_days": device_age, "account_age_days": c_age[cust],
        "customer_avg_amount": np.round(np.exp(c_level[cust] + 0.17) * rng.uniform(0.9, 1.1, n_rows), 2),
        "amount": amount, "seconds": seconds, "fraud_kind": None,
    })
    _plant_frauds(frame, rng, int(round(n_rows * fraud_rate)), allowed, c_device, c_level)
    return _finish(frame, rng)


def _draw_from_groups(rng, member_keys: np.ndarray, row_keys: np.ndarray) -> np.ndarray:
    """For each row, a random member whose key equals the row's key (-1 when there is none)."""
    order = np.argsort(member_keys, kind="stable")
    keys, starts, counts = np.unique(member_keys[order], return_index=True, return_counts=True)
    pos = np.clip(np.searchsorted(keys, row_keys), 0, len(keys) - 1)
    found = keys[pos] == row_keys
    pick = starts[pos] + np.floor(rng.random(len(row_keys)) * counts[pos]).astype(np.int64)
    return np.where(found, order[pick], -1)


def _day_weights() -> np.ndarray:
    week = np.array([1.0, 1.0, 1.05, 1.05, 1.2, 1.35, 0.85])  # Monday ... Sunday
    w = np.tile(week, WEEKS)
    return w / w.sum()


def _plant_frauds(frame, rng, n_fraud, allowed, c_device, c_level) -> None:
    counts = np.full(len(FRAUD_KINDS), n_fraud // len(FRAUD_KINDS))
    counts[: n_fraud % len(FRAUD_KINDS)] += 1
    rows = rng.permutation(len(frame))
    at = 0
    for kind, n in zip(FRAUD_KINDS, counts, strict=True):
        if n == 0:
            continue
        idx = rows[at:at + n]
        at += n
        online = dict(channel="online", device_age_days=np.floor(rng.exponential(400.0, n)))
        if kind == "unusual_amount":
            frame.loc[idx, "amount"] = frame.loc[idx, "customer_avg_amount"].to_numpy() * rng.uniform(8, 40, n)
        elif kind == "unseen_pair":
            cats = rng.choice(list(CATEGORIES), n)
            frame.loc[idx, "merchant_category"] = cats
            frame.loc[idx, "merchant_country"] = [rng.choice([k for k in COUNTRIES if k not in allowed[c]])
                                                  for c in cats]
            frame.loc[idx, "merchant"] = frame["merchant"].max() + 1 + np.arange(n)
            cust = frame.loc[idx, "customer"].to_numpy()
            frame.loc[idx, "amount"] = np.exp(c_level[cust] + [CATEGORIES[c][1] for c in cats]
                                              + rng.normal(0, 0.55, n))
            frame.loc[idx, ["channel", "device"]] = np.c_[["online"] * n, c_device[cust]]
            frame.loc[idx, "device_age_days"] = online["device_age_days"]
        elif kind == "burst":
            group = np.arange(n) // BURST
            base = frame.loc[idx, "seconds"].to_numpy()[group * BURST]
            cust = frame.loc[idx, "customer"].to_numpy()[group * BURST]
            frame.loc[idx, "customer"] = cust
            frame.loc[idx, "seconds"] = base + np.sort(rng.uniform(0, 600, n))
            frame.loc[idx, "amount"] = rng.uniform(1.0, 5.0, n)
            frame.loc[idx, "merchant_category"] = "online_services"
            frame.loc[idx, ["channel", "device"]] = np.c_[["online"] * n, c_device[cust]]
            frame.loc[idx, "device_age_days"] = online["device_age_days"]
            frame.loc[idx, ["customer_country", "card_type"]] = frame.loc[
                idx[group * BURST], ["customer_country", "card_type"]].to_numpy()
        elif kind == "night":
            day = np.floor(frame.loc[idx, "seconds"].to_numpy() / 86_400.0)
            frame.loc[idx, "seconds"] = day * 86_400.0 + rng.uniform(1, 5, n) * 3600.0
            cust = frame.loc[idx, "customer"].to_numpy()
            frame.loc[idx, ["channel", "device"]] = np.c_[["online"] * n, c_device[cust]]
            frame.loc[idx, "device_age_days"] = online["device_age_days"]
        else:  # new_device
            cust = frame.loc[idx, "customer"].to_numpy()
            other = {"ios": ["android", "web"], "android": ["ios", "web"], "web": ["ios", "android"]}
            frame.loc[idx, ["channel", "device"]] = np.c_[["online"] * n,
                                                          [rng.choice(other[d]) for d in c_device[cust]]]
            frame.loc[idx, "device_age_days"] = 0.0
            frame.loc[idx, "amount"] = frame.loc[idx, "amount"].to_numpy() * rng.uniform(2, 5, n)
        frame.loc[idx, "fraud_kind"] = kind


def _finish(frame: pd.DataFrame, rng) -> pd.DataFrame:
    """Order by time, add per-customer counts, ids, timestamps and missing values."""
    frame = frame.sort_values("seconds", kind="stable").reset_index(drop=True)
    # Transactions of the same customer in the hour up to and including this one.
    key = frame["customer"].to_numpy() * 1e8 + frame["seconds"].to_numpy()
    order = np.argsort(key, kind="stable")
    k = key[order]
    count = np.empty(len(frame), dtype=np.int64)
    count[order] = np.arange(len(k)) - np.searchsorted(k, k - 3600.0, side="left") + 1
    n = len(frame)
    ts = START + (frame["seconds"].to_numpy() * 1000).astype("timedelta64[ms]")
    out = pd.DataFrame({
        "transaction_id": [f"tx{i:08d}" for i in range(1, n + 1)],
        "timestamp": pd.Series(ts).dt.strftime("%Y-%m-%d %H:%M:%S"),
        "customer_id": [f"c{c:06d}" for c in frame["customer"]],
        "merchant_id": [f"m{m:05d}" for m in frame["merchant"]],
    })
    for c in ("merchant_category", "merchant_country", "customer_country", "channel", "card_type",
              "device"):
        out[c] = frame[c].astype(object)
    out["amount"] = np.round(frame["amount"].to_numpy(dtype="float64"), 2)
    out["customer_avg_amount"] = frame["customer_avg_amount"].to_numpy()
    out["tx_count_1h"] = count
    out["device_age_days"] = frame["device_age_days"].to_numpy(dtype="float64")
    out["account_age_days"] = frame["account_age_days"].to_numpy(dtype="float64")
    # Missing values, as real feeds have them: device unknown, account age not joined.
    out.loc[rng.random(n) < 0.03, "device"] = None
    out.loc[rng.random(n) < 0.02, "account_age_days"] = np.nan
    out["is_fraud"] = frame["fraud_kind"].notna().to_numpy().astype("int8")
    out["fraud_kind"] = frame["fraud_kind"].to_numpy()
    return out


# -- a raw payments log whose fraud shows only against each card's and terminal's own history ----
PAYMENT_KINDS = ("compromised_card", "card_testing", "compromised_terminal", "account_takeover")
HOMES = 5  # at most this many home terminals per card


def generate_payment_log(n_days: int = 60, n_cards: int = 2000, n_terminals: int = 400,
                         seed: int = 0, fraud_rate: float = 0.005) -> pd.DataFrame:
    """A raw payments log: transaction_id, timestamp, card_id, terminal_id, amount, is_fraud and
    fraud_kind, sorted by time, with no pre-computed behaviour columns.

    Each card has its own usual amount (medians spread log-normally across cards, about 20-200
    between the 10th and 90th percentile), its own rate of payments (0.25-4 a day), two to five
    home terminals where it pays 80-97% of the time, and its own hours of the day; each terminal
    has its own amount level and popularity. Frauds, about `fraud_rate` of the rows, an equal
    number of each kind in `PAYMENT_KINDS`, planted after the first week (the first quarter of a
    shorter log) so that each entity has a history, with only the fraudulent payments labelled:
      compromised_card      from some day on, for 2-7 days, extra payments at 3-5 times the
                            card's usual amount at terminals the card never used
      card_testing          5-15 payments of 0.50-3.00 within minutes at a few new terminals, then
                            in half of the cases one of 4-8 times usual, 10 minutes to 2 hours on
      compromised_terminal  for 1-4 days every payment at one terminal (many cards) is
                            fraudulent, at 1.6-2.4 times the amount it would have been
      account_takeover      2-4 payments in one day at one new terminal, around the hour opposite
                            the card's usual one, at 3-6 times the card's usual amount
    Fraudulent amounts lie within the population's range (the amount alone gives a ROC-AUC of
    about 0.6 over all frauds); what marks them is the card's or the terminal's own past.
    """
    if n_days < 7 or n_cards < 50 or n_terminals < 20:
        raise ValueError("n_days must be at least 7, n_cards at least 50 and n_terminals at least "
                         f"20; got {n_days}, {n_cards}, {n_terminals}")
    if not 0.0 <= fraud_rate < 0.2:
        raise ValueError(f"fraud_rate must be in [0, 0.2); got {fraud_rate!r}")
    rng = np.random.default_rng(seed)
    # Cards and terminals.
    c_level = rng.normal(np.log(60.0), 0.9, n_cards)  # log of the card's usual amount
    c_spread = rng.uniform(0.25, 0.4, n_cards)
    c_rate = np.exp(rng.uniform(np.log(0.25), np.log(4.0), n_cards))
    c_hour = rng.normal(14.0, 3.0, n_cards)
    c_hour_sd = rng.uniform(1.5, 3.5, n_cards)
    c_home_share = rng.uniform(0.8, 0.97, n_cards)
    t_pop = rng.lognormal(0.0, 1.0, n_terminals)
    t_pop /= t_pop.sum()
    t_level = rng.normal(0.0, 0.25, n_terminals)
    c_n_homes = rng.integers(2, HOMES + 1, n_cards)
    homes = rng.choice(n_terminals, (n_cards, HOMES), p=t_pop)
    # Normal payments, vectorised over rows.
    card = np.repeat(np.arange(n_cards), rng.poisson(c_rate * n_days))
    n = len(card)
    slot = np.floor(c_n_homes[card] * rng.random(n) ** 1.5).astype(np.int64)  # favourite homes first
    away = rng.random(n) > c_home_share[card]
    terminal = np.where(away, rng.choice(n_terminals, n, p=t_pop), homes[card, slot])
    hour = np.mod(c_hour[card] + rng.normal(0.0, 1.0, n) * c_hour_sd[card], 24.0)
    seconds = rng.integers(0, n_days, n) * 86_400.0 + hour * 3600.0
    amount = np.exp(c_level[card] + t_level[terminal] + rng.normal(0.0, 1.0, n) * c_spread[card])
    kind = np.full(n, None, dtype=object)
    # Frauds: q of each kind, so that 4q / (n + 3q) = fraud_rate (three kinds add rows).
    q = int(round(fraud_rate * n / (4.0 - 3.0 * fraud_rate)))
    warm = min(7, n_days // 4) * 86_400.0  # frauds start after the first week
    _compromise_terminals(rng, q, terminal, seconds, amount, kind, n_terminals, n_days, warm)
    used = np.unique(card * n_terminals + terminal)
    parts = [(card, terminal, seconds, amount, kind)] + [
        _card_frauds(rng, q, name, used, c_level, c_hour, t_pop, n_days, warm)
        for name in ("compromised_card", "card_testing", "account_takeover")]
    card, terminal, seconds, amount, kind = (np.concatenate(column) for column in zip(*parts, strict=True))
    seconds = np.floor(seconds)
    order = np.argsort(seconds, kind="stable")
    ts = START + seconds[order].astype("timedelta64[s]")
    card_ids = np.array([f"c{i:06d}" for i in range(n_cards)], dtype=object)
    terminal_ids = np.array([f"t{i:05d}" for i in range(n_terminals)], dtype=object)
    return pd.DataFrame({
        "transaction_id": pd.Series(np.arange(1, len(order) + 1)).astype(str).str.zfill(8)
        .radd("tx").to_numpy(dtype=object),
        "timestamp": pd.Series(ts).dt.strftime("%Y-%m-%d %H:%M:%S").to_numpy(dtype=object),
        "card_id": card_ids[card[order]],
        "terminal_id": terminal_ids[terminal[order]],
        "amount": np.maximum(np.round(amount[order], 2), 0.01),
        "is_fraud": pd.notna(kind[order]).astype("int8"),
        "fraud_kind": kind[order],
    })


def _episodes_until(sizes: np.ndarray, q: int) -> np.ndarray:
    """Sizes of the leading episodes that add up to exactly q (the last one cut short)."""
    total = np.cumsum(sizes)
    k = int(np.searchsorted(total, q))  # first episode that reaches q
    if k >= len(sizes):
        return sizes
    kept = sizes[: k + 1].copy()
    kept[k] -= total[k] - q
    return kept


def _within(sizes: np.ndarray) -> np.ndarray:
    """Each row's place within its episode, for episodes of these sizes laid end to end."""
    return np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)


def _compromise_terminals(rng, q, terminal, seconds, amount, kind, n_terminals, n_days, warm):
    """Label every payment at a few terminals for 1-4 days each, at 1.6-2.4 times the amount."""
    if q == 0:
        return
    term = rng.permutation(n_terminals)  # each terminal at most once, so windows never overlap
    length = rng.integers(1, 5, n_terminals) * 86_400.0
    start = rng.uniform(warm, np.maximum(warm, n_days * 86_400.0 - length))
    key = terminal * (n_days + 1) * 86_400.0 + seconds  # terminals apart, time within each
    order = np.argsort(key, kind="stable")
    lo = np.searchsorted(key[order], term * (n_days + 1) * 86_400.0 + start)
    hi = np.searchsorted(key[order], term * (n_days + 1) * 86_400.0 + start + length)
    kept = _episodes_until(hi - lo, q)
    rows = order[np.repeat(lo[: len(kept)], kept) + _within(kept)]
    amount[rows] *= np.repeat(rng.uniform(1.6, 2.4, len(kept)), kept)
    kind[rows] = "compromised_terminal"


def _new_terminals(rng, card, used, t_pop, n_terminals):
    """For each row's card, a terminal (by popularity) the card never paid at in the normal log
    (in a tiny log a card may have used every terminal: then, after 20 draws, any terminal)."""
    term = rng.choice(n_terminals, len(card), p=t_pop)
    for _ in range(20):  # redraw the few that hit a used terminal
        bad = np.isin(card * n_terminals + term, used)
        if not bad.any():
            break
        term[bad] = rng.choice(n_terminals, int(bad.sum()), p=t_pop)
    return term


def _card_frauds(rng, q, name, used, c_level, c_hour, t_pop, n_days, warm):
    """(card, terminal, seconds, amount, kind) of q new fraudulent payments of one card-level kind."""
    n_cards, n_terminals = len(c_level), len(t_pop)
    empty = np.zeros(0, dtype=np.int64)
    if q == 0:
        return empty, empty, np.zeros(0), np.zeros(0), np.zeros(0, dtype=object)
    tries = q  # every episode has at least one payment
    cards = rng.choice(n_cards, tries, replace=tries > n_cards)
    day0 = rng.uniform(warm, (n_days - 1) * 86_400.0, tries)
    if name == "compromised_card":
        days = rng.integers(2, 8, tries)
        sizes = np.maximum(2, rng.poisson(rng.uniform(1.0, 3.0, tries) * days))
        kept = _episodes_until(sizes, q)
        ep = np.repeat(np.arange(len(kept)), kept)
        span = np.minimum(days[ep] * 86_400.0, n_days * 86_400.0 - day0[ep] - 1)
        seconds = day0[ep] + rng.random(len(ep)) * span
        card = cards[ep]
        terminal = _new_terminals(rng, card, used, t_pop, n_terminals)
        amount = np.exp(c_level[card]) * rng.uniform(3.0, 5.0, len(ep))
    elif name == "card_testing":
        small = rng.integers(5, 16, tries)
        large = rng.random(tries) < 0.5
        kept = _episodes_until(small + large, q)
        ep = np.repeat(np.arange(len(kept)), kept)
        is_large = _within(kept) >= small[ep]
        window = rng.uniform(3.0, 15.0, tries) * 60.0
        seconds = day0[ep] + np.where(is_large, window[ep] + rng.uniform(600, 7200, len(ep)),
                                      rng.random(len(ep)) * window[ep])
        card = cards[ep]
        # 2-5 new terminals per episode; each payment uses one of them.
        n_new = rng.integers(2, 6, tries)
        pool = _new_terminals(rng, np.repeat(cards, HOMES), used, t_pop, n_terminals)
        pick = np.floor(rng.random(len(ep)) * n_new[ep]).astype(np.int64)
        terminal = pool.reshape(tries, HOMES)[ep, pick]
        amount = np.where(is_large, np.exp(c_level[card]) * rng.uniform(4.0, 8.0, len(ep)),
                          rng.uniform(0.5, 3.0, len(ep)))
    else:  # account_takeover
        kept = _episodes_until(rng.integers(2, 5, tries), q)
        ep = np.repeat(np.arange(len(kept)), kept)
        card = cards[ep]
        hour = np.mod(c_hour[cards] + 12.0 + rng.uniform(-2.0, 2.0, tries), 24.0)
        day = np.floor(day0 / 86_400.0) * 86_400.0
        seconds = day[ep] + hour[ep] * 3600.0 + rng.uniform(0.0, 3.0, len(ep)) * 3600.0
        seconds = np.minimum(seconds, n_days * 86_400.0 - 1)
        terminal = _new_terminals(rng, cards, used, t_pop, n_terminals)[ep]
        amount = np.exp(c_level[card]) * rng.uniform(3.0, 6.0, len(ep))
    return card, terminal, seconds, amount, np.full(len(ep), name, dtype=object)
