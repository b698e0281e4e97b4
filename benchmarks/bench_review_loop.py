"""The review loop, measured: frauds caught when investigators review each window's top alerts
and their verdicts teach the model before the next window.

`--data ulb` (default): ULB data in time order. The autoencoder (the defaults) is trained on day
1's normal transactions, the team's known-normal history. The loop replays day 2 in windows
(`--window-hours`, 4). In each window a strategy ranks the window's transactions; investigators
review the top `budget` share of them (the budget: `--budgets`, shares of the window's
transactions), and each verdict is the true label. Before the next window the strategy learns from
every verdict so far. Day 1's frauds are never shown to a learner: every label comes from the
loop. A learner sees day 1's normals (a seeded sample of `--day1-normals`: the known-normal
history) and the day-2 rows reviewed so far with their verdicts; rows nobody reviewed are not
labels. (Counting them as normals, as a team might treat its unflagged traffic, teaches the head
that the frauds the budget missed are normal; one run of that, seed 0 at 0.2%: supervised 128 and
label-aware 135 frauds against the autoencoder's 134.)

`--data payments`: a generated payment log per seed (`generate_payment_log(n_days=60,
seed=S)`: 2,000 cards, 400 terminals, 0.5% frauds of four kinds that show against a card's or a
terminal's past). The autoencoder is trained as `aedetect train --entity-columns
card_id,terminal_id` would, on the first 40 days (its training normals, the time-ordered split);
every row's history features come from one pass over the whole log, strictly from the past. The
loop replays the last 20 days in windows (`--window-hours`, 48 here); the learners see a seeded
sample of the first 40 days' normals and the reviewed rows. The same strategies read the
history features (the supervised model too).

Strategies (each one's verdicts are its own: what it reviewed is what it learns from):
  static       the autoencoder's score, never updated
  supervised   gradient boosting on the raw features (the label-aware head's model), refit on
               the verdicts each window; the autoencoder until it has 3 frauds to learn from
  label-aware  `HybridDetector` as `train --use-labels` builds it, refit each window: the head
               blended with the autoencoder by the count of frauds found so far
  explore      the label-aware mode, with `--explore` (20%) of each window's budget spent on the
               rows the autoencoder scores highest among those the label-aware ranking left out
               (alerts unlike the frauds found so far)
  label risk   (`--data payments --label-risk DAYS`) the label-aware mode whose head also reads
               each card's and terminal's fraud rate from the verdicts so far (the label-based
               risk of `train --use-labels`, docs/history.md), counted DAYS after each payment:
               before each window they are recomputed over the whole log from the verdicts of
               the windows before it (rows nobody reviewed: not known) and the known normals

    python benchmarks/bench_review_loop.py --seeds 3 --budgets 0.001,0.002,0.005
    python benchmarks/bench_review_loop.py --data payments --seeds 3 --budgets 0.005,0.01
    python benchmarks/bench_review_loop.py --data payments --seeds 3 --budgets 0.005,0.01 --label-risk 1
    python benchmarks/bench_review_loop.py --seeds 1 --budgets 0.002 --json loop.json --plot loop.png

Prints, per budget, the frauds caught in total and per window by each strategy (mean over seeds;
the autoencoder's seed changes), and writes runs/bench/review_loop.md (review_loop_payments.md
for the payment log; JSON and a plot of the cumulative catch when asked). Not measured here: the
threshold re-estimated from the verdicts (`aedetect alerts threshold` does it from a review
store): the budget, not a threshold, decides what is reviewed in this loop.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from common import OUT_DIR, real_data, report, table  # noqa: E402

from aedetect.data.creditcard import CREDITCARD  # noqa: E402
from aedetect.model.hybrid import HybridDetector, residual_features  # noqa: E402

STRATEGIES = ("static", "supervised", "label-aware", "explore")
DAY = 86_400
CACHE = OUT_DIR / "review-loop-cache"
PAYMENT_DAYS, TRAIN_DAYS = 60, 40  # --data payments: the log's days, the days the autoencoder trains on


def day1_autoencoder(df, seed: int):
    """The defaults trained on day 1's normals (validation: a seeded 10% of them), kept in a
    model folder so that later runs reuse it."""
    from aedetect.model.detector import AutoencoderDetector, load_detector

    path = CACHE / f"day1-{seed}"
    if path.exists():
        return load_detector(path)
    normals = df[(df["Time"] < DAY) & (df[CREDITCARD.label] == 0)][list(CREDITCARD.features)]
    det = AutoencoderDetector(schema=CREDITCARD, seed=seed).fit(normals)
    det.save(path)
    return det


class Loop:
    """One strategy's state over the windows: its verdicts so far and its current scorer."""

    def __init__(self, name: str, det, X, y, raw: np.ndarray, ae: np.ndarray, learn_base: np.ndarray,
                 explore: float, seed: int, risk=None):
        self.name, self.det, self.X, self.y, self.raw, self.ae = name, det, X, y, raw, ae
        self.learn_base, self.explore, self.seed = learn_base, explore, seed
        self.reviewed: list[np.ndarray] = []
        self.scorer = None  # None: the autoencoder's score
        self.risk = risk  # "label risk": (the autoencoder under a schema with label-based risk, the raw log)
        if risk is not None:
            self.det = risk[0]
            self._with_risk(learn_base)

    def _with_risk(self, known: np.ndarray) -> None:
        """`X` with the label-based risk columns computed from the labels of the rows `known`
        (the known normals, the reviewed rows: their verdicts), every other row's not known."""
        from aedetect.data.history import add_history

        det, log = self.risk
        schema = det.dataset_schema
        labelled = log.assign(is_fraud=np.nan)
        labelled.loc[labelled.index[known], "is_fraud"] = self.y[known]
        features = add_history(labelled, schema)[0][schema.label_features]
        self.X = self.X.drop(columns=schema.label_features, errors="ignore").join(features)

    def rank(self, rows: np.ndarray) -> np.ndarray:
        if self.scorer is None:
            return self.ae[rows]
        if self.name == "supervised":
            return self.scorer.decision_function(self.raw[rows])
        return self.scorer.anomaly_score(self.X.iloc[rows])

    def review(self, rows: np.ndarray, k: int) -> np.ndarray:
        """The rows the investigators review in this window: the top k of the ranking (with
        `explore`, part of k from the autoencoder's top among the rest)."""
        order = rows[np.argsort(-self.rank(rows), kind="stable")]
        k_explore = int(round(self.explore * k)) if self.name == "explore" and self.scorer is not None else 0
        chosen = order[:k - k_explore]
        if k_explore:
            rest = np.setdiff1d(rows, chosen)
            chosen = np.concatenate([chosen, rest[np.argsort(-self.ae[rest], kind="stable")[:k_explore]]])
        self.reviewed.append(chosen)
        return chosen

    def learn(self) -> None:
        """Refit on the known normals and the rows reviewed so far, with their verdicts (rows in
        time order)."""
        if self.name == "static":
            return
        rows = np.concatenate([self.learn_base, np.sort(np.concatenate(self.reviewed))])
        labels = self.y[rows]
        if labels.sum() < 3:
            return
        if self.risk is not None:  # this window's verdicts count from the next window on
            self._with_risk(rows)
        hyb = HybridDetector(self.det, seed=self.seed)
        if self.name == "supervised":
            from threadpoolctl import threadpool_limits

            with threadpool_limits(1):
                self.scorer = hyb.new_head().fit(self.raw[rows], labels)
        else:
            self.scorer = hyb.fit(self.X.iloc[rows], labels)


class Replay:
    """What a loop replays: the autoencoder, the rows (a table the detectors read), their labels,
    the learners' known normals and the windows (row indices, in time order)."""

    def __init__(self, det, X, y: np.ndarray, learn_base: np.ndarray, windows: list[np.ndarray], risk=None):
        self.det, self.X, self.y, self.learn_base, self.windows = det, X, y, learn_base, windows
        self.risk = risk  # for "label risk": (the autoencoder under a schema with label-based risk, the raw log)


def _windows(t: np.ndarray, start: float, hours: float) -> list[np.ndarray]:
    edges = np.arange(start, t.max() + hours * 3600, hours * 3600)
    windows = [np.flatnonzero((t >= lo) & (t < hi)) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    return [w for w in windows if len(w)]


def _known_normals(normals: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A seeded sample of n of the normals before the replay (the known-normal history), in order."""
    return np.sort(np.random.default_rng(seed).choice(normals, min(n, len(normals)), replace=False))


def ulb_replay(df, seed: int, args) -> Replay:
    det = day1_autoencoder(df, seed)
    X, y, t = df[list(CREDITCARD.features)], df[CREDITCARD.label].to_numpy().astype(int), df["Time"].to_numpy()
    known = _known_normals(np.flatnonzero((t < DAY) & (y == 0)), args.day1_normals, seed)
    return Replay(det, X, y, known, _windows(t, DAY, args.window_hours))


def payments_replay(seed: int, args) -> Replay:
    """The generated log (`bench_history.PaymentModel`): the last days in windows."""
    from bench_history import PaymentModel

    pm = PaymentModel(seed, PAYMENT_DAYS, TRAIN_DAYS)
    known = _known_normals(np.flatnonzero((pm.t < TRAIN_DAYS * DAY) & (pm.y == 0)), args.day1_normals, seed)
    risk = None
    if args.label_risk:  # the same network, its schema with label-based risk (read by the head only)
        import copy

        from aedetect.data.schema import DatasetSchema

        schema = pm.det.dataset_schema
        history = {**schema.history.model_dump(), "label_delay": args.label_risk * DAY}
        det = copy.copy(pm.det)
        det.schema = DatasetSchema.model_validate({**schema.model_dump(), "history": history})
        risk = (det, pm.log)
    return Replay(pm.det, pm.X, pm.y, known, _windows(pm.t, TRAIN_DAYS * DAY, args.window_hours), risk)


def one_seed(replay: Replay, seed: int, budgets: list[float], args, say=print) -> dict:
    det, X, y, learn_base, windows = replay.det, replay.X, replay.y, replay.learn_base, replay.windows
    raw = residual_features(det, X, ("raw",))[0]
    ae = det.anomaly_score(X)
    out = {}
    names = strategies(args)
    for budget in budgets:
        loops = {name: Loop(name, det, X, y, raw, ae, learn_base, args.explore, seed,
                            replay.risk if name == "label risk" else None) for name in names}
        caught = {name: [] for name in names}
        reviews = []
        for i, rows in enumerate(windows):
            k = max(1, int(round(budget * len(rows))))
            reviews.append(k)
            start = time.perf_counter()
            for name, loop in loops.items():
                caught[name].append(int(y[loop.review(rows, k)].sum()))
                loop.learn()
            say(f"  seed {seed}, budget {budget:.3%}, window {i + 1}/{len(windows)}: {int(y[rows].sum())} frauds, "
                f"{k} reviews; caught " + ", ".join(f"{n} {c[-1]}" for n, c in caught.items())
                + f" ({time.perf_counter() - start:.0f} s)")
        out[budget] = {"caught": caught, "reviews": reviews, "frauds": [int(y[w].sum()) for w in windows],
                       "rows": [len(w) for w in windows]}
    return out


def strategies(args) -> tuple[str, ...]:
    return STRATEGIES + (("label risk",) if args.label_risk else ())


def plot(per_seed: list[dict], budget: float, path: Path, what: str, window: str, names) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    # every review a fraud while the window has any left (mean over seeds: each may have its own data)
    best = np.mean([np.cumsum(np.minimum(s[budget]["frauds"], s[budget]["reviews"])) for s in per_seed], 0)
    x = np.arange(1, len(best) + 1)
    for name in names:
        ax.plot(x, np.mean([np.cumsum(s[budget]["caught"][name]) for s in per_seed], 0), marker="o", label=name)
    ax.plot(x, best, "k:", label="at most (every review a fraud)")
    ax.set_xlabel(f"window ({window} each)")
    ax.set_ylabel("frauds caught, cumulative")
    ax.set_title(f"Review loop on {what}\nbudget {budget:.1%} of transactions ({len(per_seed)} seeds)", fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", choices=["ulb", "payments"], default="ulb",
                    help="ULB day 2, or the last 20 days of a generated payment log with entity history")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budgets", default="0.001,0.002,0.005", help="shares of each window's transactions reviewed")
    ap.add_argument("--window-hours", type=float, default=None, help="4 for ulb, 48 for payments")
    ap.add_argument("--explore", type=float, default=0.2, help="share of the budget the explore strategy spends")
    ap.add_argument("--day1-normals", type=int, default=None,
                    help="known normals the learners see (40,000 of ULB day 1; 10,000 of the log's first 40 days)")
    ap.add_argument("--label-risk", type=float, default=None, metavar="DAYS",
                    help="--data payments: add the 'label risk' strategy, verdicts counted DAYS after each payment")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--plot", type=Path, default=None, help="cumulative catch at the 0.2%% budget (or the first)")
    args = ap.parse_args()
    budgets = [float(b) for b in args.budgets.split(",")]
    payments = args.data == "payments"
    if args.label_risk and not payments:
        raise SystemExit("--label-risk needs --data payments (entity history)")
    names = strategies(args)
    args.window_hours = args.window_hours or (48.0 if payments else 4.0)
    args.day1_normals = args.day1_normals or (10_000 if payments else 40_000)
    if payments:
        replays = (payments_replay(seed, args) for seed in range(args.seeds))
        what = f"the last {PAYMENT_DAYS - TRAIN_DAYS} days of a generated payment log"
    else:
        df, _ = real_data()
        replays = (ulb_replay(df, seed, args) for seed in range(args.seeds))
        what = "ULB day 2"
    per_seed = [one_seed(r, seed, budgets, args) for seed, r in enumerate(replays)]
    parts, summary = [], {}
    for budget in budgets:
        runs = [s[budget] for s in per_seed]
        total = {n: statistics.mean(sum(r["caught"][n]) for r in runs) for n in names}
        totals = {n: [sum(r["caught"][n]) for r in runs] for n in names}
        lo_hi = {n: (min(v), max(v)) for n, v in totals.items()}
        summary[budget] = {"frauds": sum(runs[0]["frauds"]), "reviews": sum(runs[0]["reviews"]), "total": total,
                           "range": lo_hi, "per_seed": runs}
        rows = [[n, f"{total[n]:.1f} [{lo_hi[n][0]}-{lo_hi[n][1]}]", f"{total[n] / total['static']:.2f}x",
                 *(f"{statistics.mean(r['caught'][n][i] for r in runs):.1f}" for i in range(len(runs[0]["frauds"])))]
                for n in names]
        parts.append(f"**Budget {budget:.1%}** of each window's transactions: {sum(runs[0]['reviews'])} reviews "
                     f"for {sum(runs[0]['frauds'])} frauds (seed 0); frauds per window "
                     f"{runs[0]['frauds']}, reviews per window {runs[0]['reviews']}\n\n"
                     + table(["strategy", "frauds caught (mean [min-max])", "against static",
                              *(f"window {i + 1}" for i in range(len(runs[0]["frauds"])))], rows))
    load = os.getloadavg()[0]
    body = (f"{what} in {args.window_hours:g}-hour windows, {args.seeds} seeds (0-{args.seeds - 1}), "
            f"explore share {args.explore:g}; load average at the end {load:.2f}\n\n" + "\n\n".join(parts))
    name = "review_loop" + ("_payments" if payments else "") + (f"_risk{args.label_risk:g}d" if args.label_risk else "")
    report(name, f"The review loop: {what}", body)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({str(b): v for b, v in summary.items()}, indent=2, default=str))
    if args.plot is not None:
        plot(per_seed, 0.002 if 0.002 in budgets else budgets[0], args.plot, what, f"{args.window_hours:g} hours",
             names)


if __name__ == "__main__":
    main()
