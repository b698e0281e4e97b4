"""Entity history features: quality on generated payment logs, and the speed of computing them.

Quality (default). For each seed, `generate_payment_log(n_days=60, seed=S)` (2,000 cards, 400
terminals, 0.5% frauds of four kinds that show only against a card's or a terminal's past). The
first 40 days train, the last 20 days are scored, as `aedetect train --data first.csv` then
`aedetect score --data later.csv` would (the Python API, in-process, with the CLI's default
settings):

  history      aedetect with --entity-columns card_id,terminal_id (the model reads the table's
               timestamp and amount plus 28 history features; scoring the later period continues
               the history from the state the model kept at the end of its training data)
  no history   aedetect on the same table without entity columns (timestamp and amount)
  IsolationForest  scikit-learn's, seeded, default settings, on the history features plus amount
               as the model reads them before scaling (log1p of the amount, the counts and the
               seconds; the ratios and 0/1 flags as they are), computed with `add_history` on the
               training period and, for the later period, from the training period's end state;
               fitted on the rows the autoencoder trains on (the training normals of its split:
               `train` with a label column trains on labelled normals only)

Both models use `--exclude-columns fraud_kind,transaction_id` (fraud_kind is the answer; the
transaction id is an id). Metrics on every row of the later period: ROC-AUC, PR-AUC, recall at
precision 0.5 (the highest recall among thresholds with precision >= 0.5), recall and precision
at the model's own threshold (aedetect), and per fraud kind: recall when each method flags the
same number of rows (the top 1% of the later period) and PR-AUC of the kind against the normals.
A fourth row, `abs(card ratio 30d)`, is no model: the absolute value of one history feature,
`card_id.amount_ratio_30d` (the amount against the card's usual of the last 30 days), as the
score; it says how much of the signal a single feature holds, beside what the models make of all.

    python benchmarks/bench_history.py --seeds 3 [--json runs/bench/history.json]

Speed (`--speed`): `aedetect.data.history.compute` alone on synthetic arrays: N payments over 60
days (sorted times), N/10 cards and N/100 terminals (ids as text), log-normal amounts. Prints
rows/s by wall and CPU time, the peak resident memory while computing (Linux: the process's
high-water mark VmHWM, reset through /proc/self/clear_refs just before the call, so the inputs'
own memory is part of it and printed beside it) and the load average; a load average above 1.5
before a call means other work shared the machine and the timing is no measurement. NumPy's
huge-page hint is off, as the `aedetect` command runs (`NUMPY_MADVISE_HUGEPAGE=1` to compare).
`state table s`: building the returned state's table (`HistoryState.rows`) after the timed call;
`compute` keeps the state's ids encoded and builds the table when something reads it (saving a
model). Code before that change built it inside the call, in the thread pool.

    python benchmarks/bench_history.py --speed --rows 10000000 [--profile]

After a state (`--after-state DAYS`): 6 days of payments (`--rows-per-day`, 33,000) after DAYS days
of state, their history in one call and in chunks of `--chunk-rows` (20,000) with the state carried
from chunk to chunk, as `aedetect score` computes it. Prints both times, their ratio, how many
feature values of the two are more than 1e-9 apart (none is the promise), and the load average.

    python benchmarks/bench_history.py --after-state 30
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")  # as the `aedetect` command runs (aedetect/_entry.py)

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from common import OUT_DIR, machine  # noqa: E402

ENTITIES = ["card_id", "terminal_id"]
EXCLUDE = ["fraud_kind", "transaction_id"]
REFERENCE = "abs(card ratio 30d)"  # one history feature as the score, no model: what the features hold
METHODS = ("history", "no history", "IsolationForest", REFERENCE)
FLAG_SHARE = 0.01  # per-kind recall: every method flags this share of the later period


def recall_at_precision(y, s, precision: float = 0.5) -> float:
    from sklearn.metrics import precision_recall_curve

    p, r, _ = precision_recall_curve(y, s)
    ok = p >= precision
    return float(r[ok].max()) if ok.any() else 0.0


def top_flags(s, share: float):
    """The rows of the highest `share` of scores (ties broken by position: exactly that many)."""
    import numpy as np

    k = max(1, int(round(len(s) * share)))
    flags = np.zeros(len(s), bool)
    flags[np.argsort(-np.asarray(s), kind="stable")[:k]] = True
    return flags


def forest_matrix(df, schema):
    """The history features plus amount, as the autoencoder reads them before scaling."""
    import numpy as np

    from aedetect.data.history import is_log_feature

    cols = {"amount": np.log1p(np.maximum(df["amount"].to_numpy(dtype="float64"), 0.0))}
    for name in schema.history_features:
        v = df[name].to_numpy(dtype="float64")
        cols[name] = np.log1p(v) if is_log_feature(name) else v
    return np.column_stack(list(cols.values()))


def periods(seed: int, days: int, train_days: int, cards: int, terminals: int, fraud_rate: float):
    """`generate_payment_log(...)` cut into its first `train_days` days and the rest."""
    import pandas as pd

    from aedetect.data.generate import generate_payment_log

    log = generate_payment_log(n_days=days, n_cards=cards, n_terminals=terminals, seed=seed,
                               fraud_rate=fraud_rate)
    ts = pd.to_datetime(log["timestamp"])
    day = ((ts - ts.min().normalize()).dt.total_seconds() // 86_400).to_numpy()
    return log[day < train_days].reset_index(drop=True), log[day >= train_days].reset_index(drop=True)



class PaymentModel:
    """A generated log's autoencoder with history, as `aedetect train --entity-columns
    card_id,terminal_id` builds it on the first `train_days` days, and the whole log's rows as
    the models read them (`X`: every row's history from one pass, strictly from the past),
    labels `y`, times `t` (seconds from the first day), the training split (indices into the
    first period, which opens the log), `n_first`, the first period's row count, and `log`, the
    raw rows."""

    def __init__(self, seed: int, days: int = 60, train_days: int = 40):
        import numpy as np
        import pandas as pd

        from aedetect.data.history import add_history
        from aedetect.data.infer import infer_schema
        from aedetect.model.detector import load_detector
        from aedetect.training.config import TrainConfig
        from aedetect.training.workflow import split_frame, train_detector

        first, later = periods(seed, days, train_days, 2000, 400, 0.005)
        config = TrainConfig(seed=seed)
        warm = f"-w{config.history_warmup_days:g}" if config.history_warmup_days else ""
        path = OUT_DIR / "payments-cache" / f"{days}d-{train_days}d-seed{seed}{warm}"
        if path.exists():  # trained once, kept: the benchmarks that use it share it
            self.det = load_detector(path)
        else:
            schema = infer_schema(first).with_overrides(entity_columns=ENTITIES, exclude_columns=EXCLUDE)
            self.det = train_detector(first, config, schema).detector
            self.det.save(path)
        schema = self.det.dataset_schema
        # the training split, as indices into the first period: the warm-up's rows (history only)
        # are left out before splitting (`history_warmup`), by time and label only
        from aedetect.data.history import table_inputs
        from aedetect.training.workflow import history_warmup

        first_h, first_state = add_history(first, schema)
        warmup = history_warmup(table_inputs(first, schema)[0], first_state, config.history_warmup_days)
        kept = np.arange(len(first)) if warmup is None else np.flatnonzero(warmup["keep"])
        split = split_frame(first_h.iloc[kept].reset_index(drop=True), config, schema)
        from dataclasses import replace

        parts = ("train", "validation", "selection", "test")
        self.split = replace(split, **{f: kept[getattr(split, f)] for f in parts})
        log = pd.concat([first, later], ignore_index=True)
        self.X = add_history(log, schema)[0][list(schema.features)]
        self.y = log["is_fraud"].to_numpy().astype(int)
        ts = pd.to_datetime(log["timestamp"])
        self.t = (ts - ts.min().normalize()).dt.total_seconds().to_numpy()
        self.n_first = len(first)
        self.later = np.arange(self.n_first, len(log))
        self.log = log  # the raw rows (bench_review_loop's label-based risk recomputes from them)

def one_seed(seed: int, days: int, train_days: int, cards: int, terminals: int, fraud_rate: float,
             epochs, protocol: str = "auto") -> dict:
    import numpy as np
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import average_precision_score, roc_auc_score

    from aedetect.data.generate import PAYMENT_KINDS
    from aedetect.data.history import add_history
    from aedetect.data.infer import infer_schema
    from aedetect.training.config import TrainConfig
    from aedetect.training.workflow import train_detector

    first, later = periods(seed, days, train_days, cards, terminals, fraud_rate)
    y = later["is_fraud"].to_numpy()
    kind = later["fraud_kind"].fillna("").to_numpy(dtype=object)
    config = TrainConfig(seed=seed, protocol=protocol, **({"epochs": epochs} if epochs else {}))
    base = infer_schema(first)
    schemas = {"history": base.with_overrides(entity_columns=ENTITIES, exclude_columns=EXCLUDE),
               "no history": base.with_overrides(exclude_columns=EXCLUDE)}
    scores, notes, own = {}, {}, {}
    for name, schema in schemas.items():
        start = time.perf_counter()
        res = train_detector(first, config, schema)
        det = res.detector
        train_s = time.perf_counter() - start
        scores[name] = det.anomaly_score(later)
        flagged = scores[name] > det.threshold_
        own[name] = {"recall": float(flagged[y == 1].mean()),
                     "precision": float(y[flagged].mean()) if flagged.any() else float("nan"),
                     "flagged": int(flagged.sum())}
        notes[name] = (f"{len(schema.features)} features, {det.n_epochs_} epochs on "
                       f"{len(res.split.train):,} training normals in {train_s:.0f} s")
        if name == "history":  # the forest: the same rows, the same features, the same state
            hist_schema, split, state, table = schema, res.split, det.history_state_, res.table
    start = time.perf_counter()
    first_h = table  # the first period as trained on: its history columns, without the warm-up's rows
    later_h, _ = add_history(later, hist_schema, state)
    forest = IsolationForest(random_state=seed).fit(forest_matrix(first_h.iloc[split.train], hist_schema))
    scores["IsolationForest"] = -forest.score_samples(forest_matrix(later_h, hist_schema))
    notes["IsolationForest"] = (f"{1 + len(hist_schema.history_features)} features, fitted on the same "
                                f"{len(split.train):,} rows in {time.perf_counter() - start:.0f} s")
    scores[REFERENCE] = np.abs(later_h["card_id.amount_ratio_30d"].to_numpy(dtype="float64"))
    out = {"seed": seed, "rows": {"first": len(first), "later": len(later), "later_frauds": int(y.sum())},
           "notes": notes, "own_threshold": own, "overall": {}, "per_kind": {}}
    for m, s in scores.items():
        s = np.asarray(s, dtype="float64")
        out["overall"][m] = {"roc_auc": float(roc_auc_score(y, s)),
                             "pr_auc": float(average_precision_score(y, s)),
                             "recall_at_p50": recall_at_precision(y, s)}
        flags = top_flags(s, FLAG_SHARE)
        per = {}
        for k in PAYMENT_KINDS:
            rows = kind == k
            if not rows.any():
                continue
            sub = (y == 0) | rows
            per[k] = {"frauds": int(rows.sum()), f"recall_top{FLAG_SHARE:.0%}": float(flags[rows].mean()),
                      "pr_auc": float(average_precision_score(rows[sub], s[sub]))}
        per["all"] = {"frauds": int(y.sum()), f"recall_top{FLAG_SHARE:.0%}": float(flags[y == 1].mean()),
                      "pr_auc": out["overall"][m]["pr_auc"]}
        out["per_kind"][m] = per
    return out


def cell(values) -> str:
    values = [v for v in values if v == v]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def quality_report(runs: list[dict]) -> tuple[str, dict]:
    from aedetect.data.generate import PAYMENT_KINDS

    top = f"recall_top{FLAG_SHARE:.0%}"
    lines = ["| seed | method | ROC-AUC | PR-AUC | recall at precision 0.5 "
             "| own threshold: recall / precision / flagged |",
             "|---|---|---:|---:|---:|---:|"]
    for r in runs:
        for m in METHODS:
            o = r["overall"][m]
            t = r["own_threshold"].get(m)
            own = f"{t['recall']:.3f} / {t['precision']:.3f} / {t['flagged']:,}" if t else "-"
            lines.append(f"| {r['seed']} | {m} | {o['roc_auc']:.3f} | {o['pr_auc']:.3f} | "
                         f"{o['recall_at_p50']:.3f} | {own} |")
    for m in METHODS:
        vals = {k: [r["overall"][m][k] for r in runs] for k in ("roc_auc", "pr_auc", "recall_at_p50")}
        own = [r["own_threshold"][m]["recall"] for r in runs if m in r["own_threshold"]]
        lines.append(f"| **mean ± sd** | **{m}** | {cell(vals['roc_auc'])} | {cell(vals['pr_auc'])} | "
                     f"{cell(vals['recall_at_p50'])} | {'recall ' + cell(own) if own else '-'} |")
    kinds = [*PAYMENT_KINDS, "all"]
    per = [f"Per fraud kind, mean ± sd over {len(runs)} seed(s): recall when each method flags the top "
           f"{FLAG_SHARE:.0%} of the later period (the same number of rows), then PR-AUC of the kind "
           "against the normals.", "",
           "| fraud kind | frauds per seed | " + " | ".join(f"{m} recall@top{FLAG_SHARE:.0%}" for m in METHODS)
           + " | " + " | ".join(f"{m} PR-AUC" for m in METHODS) + " |",
           "|---|---:|" + "---:|" * (2 * len(METHODS))]
    for k in kinds:
        n = [r["per_kind"]["history"][k]["frauds"] for r in runs if k in r["per_kind"]["history"]]
        rec = [cell([r["per_kind"][m][k][top] for r in runs if k in r["per_kind"][m]]) for m in METHODS]
        pr = [cell([r["per_kind"][m][k]["pr_auc"] for r in runs if k in r["per_kind"][m]]) for m in METHODS]
        lines_k = f"| {k} | {statistics.mean(n):.0f} | " + " | ".join(rec) + " | " + " | ".join(pr) + " |"
        per.append(lines_k)
    mean_pr = {m: statistics.mean(r["overall"][m]["pr_auc"] for r in runs) for m in METHODS}
    checks = {
        "history PR-AUC >= 2x no history (mean)": mean_pr["history"] >= 2 * mean_pr["no history"],
        "history PR-AUC >= IsolationForest + 0.10 (mean)": mean_pr["history"] >= mean_pr["IsolationForest"] + 0.10,
        "both, every seed": all(r["overall"]["history"]["pr_auc"] >= max(
            2 * r["overall"]["no history"]["pr_auc"], r["overall"]["IsolationForest"]["pr_auc"] + 0.10)
            for r in runs),
    }
    check_lines = [f"- {'PASS' if ok else 'FAIL'}: {what} (history {mean_pr['history']:.3f}, no history "
                   f"{mean_pr['no history']:.3f}, IsolationForest {mean_pr['IsolationForest']:.3f})"
                   if i == 0 else f"- {'PASS' if ok else 'FAIL'}: {what}"
                   for i, (what, ok) in enumerate(checks.items())]
    notes = [f"- seed {r['seed']}: {r['rows']['first']:,} rows train (first period), {r['rows']['later']:,} "
             f"scored ({r['rows']['later_frauds']} frauds); " + "; ".join(f"{m}: {t}" for m, t in r["notes"].items())
             for r in runs]
    text = "\n".join(lines) + "\n\n" + "\n".join(per) + "\n\nThe issue's bar:\n\n" + "\n".join(check_lines) \
        + "\n\n" + "\n".join(notes)
    return text, {"mean_pr_auc": mean_pr, "checks": checks}


# ---------------------------------------------------------------------------------------- speed
def synthetic(n: int, seed: int = 0):
    """N payments over 60 days, N/10 cards, N/100 terminals (ids as text), log-normal amounts."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, 60 * 86_400, n)).astype("float64")
    cards = pd.Series(rng.integers(0, max(1, n // 10), n)).astype(str)
    terms = pd.Series(rng.integers(0, max(1, n // 100), n)).astype(str)
    amount = np.round(rng.lognormal(3.5, 1.0, n), 2)
    return t, {"card_id": cards, "terminal_id": terms}, amount


def _proc_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset the process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def speed(n: int, repeats: int, profile: bool, hours: bool = True) -> dict:
    from aedetect.data.history import compute

    start = time.perf_counter()
    t, ents, amount = synthetic(n)
    gen_s = time.perf_counter() - start
    base_kb = _proc_kb("VmRSS")
    reset = _reset_peak()
    figures = []
    for i in range(repeats):
        load = os.getloadavg()
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        w0, c0 = time.perf_counter(), time.process_time()
        features, state = compute(t, ents, amount, hours=hours)  # hours: as `--entity-columns` models
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        w1 = time.perf_counter()
        len(state.rows)  # the state's table: built when read (saving a model), not by `compute`
        table_s = time.perf_counter() - w1
        if i == 0:
            peak_kb = _proc_kb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        figures.append({"wall_s": wall, "cpu_s": cpu, "user_s": r1.ru_utime - r0.ru_utime,
                        "sys_s": r1.ru_stime - r0.ru_stime, "minor_faults": r1.ru_minflt - r0.ru_minflt,
                        "state_table_s": table_s,
                        "load_before": load[0], "load_after": os.getloadavg()[0]})
        del features, state
    best = min(figures, key=lambda f: f["wall_s"])
    out = {"rows": n, "cards": n // 10, "terminals": n // 100, "generate_s": gen_s, "repeats": figures,
           "best_wall_s": best["wall_s"], "rows_per_s_wall": n / best["wall_s"],
           "rows_per_s_cpu": n / best["cpu_s"], "cpu_s_of_best": best["cpu_s"],
           "inputs_rss_mb": (base_kb or 0) / 1024, "peak_rss_mb": peak_kb / 1024,
           "peak_rss_how": ("VmHWM after resetting it through /proc/self/clear_refs with the inputs in "
                            "memory" if reset else "getrusage ru_maxrss (whole process, inputs' "
                            "generation included)"),
           "load_avg": os.getloadavg(), "cores": os.cpu_count(),
           "numpy_madvise_hugepage": os.environ["NUMPY_MADVISE_HUGEPAGE"], "hours": hours}
    print(f"history compute: {n:,} rows, {n // 10:,} cards, {n // 100:,} terminals (inputs generated in "
          f"{gen_s:.1f} s, not timed)")
    print(f"{'run':>4} {'wall s':>8} {'CPU s':>8} {'user s':>8} {'sys s':>8} {'page faults':>12} "
          f"{'rows/s wall':>12} {'rows/s CPU':>12} {'load before':>12} {'state table s':>14}")
    for i, f in enumerate(figures):
        print(f"{i + 1:>4} {f['wall_s']:>8.2f} {f['cpu_s']:>8.2f} {f['user_s']:>8.2f} {f['sys_s']:>8.2f} "
              f"{f['minor_faults']:>12,} {n / f['wall_s']:>12,.0f} {n / f['cpu_s']:>12,.0f} "
              f"{f['load_before']:>12.2f} {f['state_table_s']:>14.2f}")
    print(f"best: {out['rows_per_s_wall']:,.0f} rows/s wall, {out['rows_per_s_cpu']:,.0f} rows/s CPU time; "
          f"peak RSS {out['peak_rss_mb']:,.0f} MB ({out['peak_rss_how']}; the inputs alone: "
          f"{out['inputs_rss_mb']:,.0f} MB); load average {' '.join(f'{v:.2f}' for v in out['load_avg'])} "
          f"on {out['cores']} cores; NUMPY_MADVISE_HUGEPAGE={out['numpy_madvise_hugepage']}; "
          f"{'with' if out['hours'] else 'without'} the hour feature")
    if max(f["load_before"] for f in figures) > 1.5:
        print("load average > 1.5 before a run: other work shared the machine; taken under load, no measurement")
    if profile:
        import cProfile
        import io
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        compute(t, ents, amount, hours=hours)
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(18)
        print("cProfile of one call, by own time:\n" + buf.getvalue())
        out["profile"] = buf.getvalue()
    return out


def after_state(state_days: int, days: int, chunk_rows: int, per_day: int) -> dict:
    """`aedetect score`'s way after a state: the later rows' history in one call, then in chunks of
    `chunk_rows` (the state carried from chunk to chunk), after `state_days` days of state; the
    two must give the same features (within 1e-9)."""
    import numpy as np
    import pandas as pd

    from aedetect.data.history import compute

    rng = np.random.default_rng(0)
    n = per_day * (state_days + days)
    t = np.sort(rng.integers(0, (state_days + days) * 86_400, n)).astype("float64")
    ents = {"card_id": pd.Series(rng.integers(0, max(1, per_day * 3), n)).astype(str),
            "terminal_id": pd.Series(rng.integers(0, max(1, per_day // 6), n)).astype(str)}
    amount = np.round(rng.lognormal(3.5, 1.0, n), 2)
    cut = int(np.searchsorted(t, state_days * 86_400))

    def rows(a, b):
        return {k: v.iloc[a:b].reset_index(drop=True) for k, v in ents.items()}

    _, state = compute(t[:cut], rows(0, cut), amount[:cut], hours=True)
    load = os.getloadavg()[0]
    w = time.perf_counter()
    whole, _ = compute(t[cut:], rows(cut, n), amount[cut:], state=state, hours=True)
    one_s = time.perf_counter() - w
    w, parts, s = time.perf_counter(), [], state
    for i, a in enumerate(range(cut, n, chunk_rows)):
        b = min(a + chunk_rows, n)
        f, s = compute(t[a:b], rows(a, b), amount[a:b], state=s, continues=i > 0, hours=True)
        parts.append(f)
    chunks_s = time.perf_counter() - w
    chunked, one = pd.concat(parts, ignore_index=True).to_numpy(), whole.to_numpy()
    close = np.isclose(chunked, one, rtol=1e-9, atol=1e-9) | (np.isnan(chunked) & np.isnan(one))
    out = {"state_rows": len(state.rows), "rows": n - cut, "chunk_rows": chunk_rows, "one_call_s": one_s,
           "chunks_s": chunks_s, "values_apart": int((~close).sum()), "load_before": load,
           "load_after": os.getloadavg()[0]}
    print(f"after {len(state.rows):,} rows of state ({state_days} days): {n - cut:,} rows in one call "
          f"{one_s:.2f} s, in chunks of {chunk_rows:,} {chunks_s:.2f} s ({chunks_s / one_s:.1f}x); "
          f"{out['values_apart']:,} of {close.size:,} feature values more than 1e-9 apart between the two; "
          f"load average {load:.2f} before, {out['load_after']:.2f} after")
    if load > 1.5:
        print("load average > 1.5 before the run: other work shared the machine; no measurement")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--train-days", type=int, default=40)
    ap.add_argument("--cards", type=int, default=2000)
    ap.add_argument("--terminals", type=int, default=400)
    ap.add_argument("--fraud-rate", type=float, default=0.005)
    ap.add_argument("--epochs", type=int, default=None, help="at most (default: the CLI's, early stopping)")
    ap.add_argument("--protocol", default="auto", choices=["auto", "time", "guide"],
                    help="the training split (default: the CLI's, time-ordered here)")
    ap.add_argument("--json", type=Path, default=None, help="write the numbers here")
    ap.add_argument("--out", type=Path, default=None, help="the Markdown (default runs/bench/history.md, "
                    "or history-speed.md with --speed)")
    ap.add_argument("--speed", action="store_true", help="time history.compute on synthetic arrays instead")
    ap.add_argument("--rows", type=int, default=1_000_000, help="--speed: transactions")
    ap.add_argument("--repeats", type=int, default=1, help="--speed: calls timed (best wall time kept)")
    ap.add_argument("--profile", action="store_true", help="--speed: cProfile one more call")
    ap.add_argument("--without-hours", action="store_true",
                    help="--speed: without the hour against the usual hours (models saved before it)")
    ap.add_argument("--after-state", type=int, default=None, metavar="DAYS",
                    help="time the history of --rows-per-day x 6 days after DAYS days of state, in one "
                    "call and in chunks of --chunk-rows (as `aedetect score` computes it)")
    ap.add_argument("--rows-per-day", type=int, default=33_000)
    ap.add_argument("--chunk-rows", type=int, default=20_000)
    args = ap.parse_args()
    if args.after_state is not None:
        numbers = after_state(args.after_state, 6, args.chunk_rows, args.rows_per_day)
        text = (f"history after {numbers['state_rows']:,} rows of state: {numbers['rows']:,} rows, one call "
                f"{numbers['one_call_s']:.2f} s, chunks of {args.chunk_rows:,} {numbers['chunks_s']:.2f} s; load "
                f"average {numbers['load_before']:.2f}\n")
        out = args.out or OUT_DIR / "history-after-state.md"
    elif args.speed:
        numbers = speed(args.rows, args.repeats, args.profile, not args.without_hours)
        text = (f"history.compute, {args.rows:,} rows: {numbers['rows_per_s_wall']:,.0f} rows/s wall, "
                f"{numbers['rows_per_s_cpu']:,.0f} rows/s CPU; peak RSS {numbers['peak_rss_mb']:,.0f} MB; "
                f"load average {numbers['load_avg'][0]:.2f}\n")
        out = args.out or OUT_DIR / "history-speed.md"
    else:
        runs = []
        for seed in range(args.seeds):
            runs.append(one_seed(seed, args.days, args.train_days, args.cards, args.terminals,
                                 args.fraud_rate, args.epochs, args.protocol))
            r = runs[-1]
            print(f"seed {seed}: PR-AUC " + ", ".join(f"{m} {r['overall'][m]['pr_auc']:.3f}" for m in METHODS)
                  + f" (load average {os.getloadavg()[0]:.2f})", flush=True)
        body, summary = quality_report(runs)
        text = (f"Entity history on generated payment logs: {args.days} days, {args.cards:,} cards, "
                f"{args.terminals:,} terminals, {args.fraud_rate:.1%} frauds; the first {args.train_days} "
                f"days train, the other {args.days - args.train_days} are scored; seeds 0-{args.seeds - 1}.\n\n"
                + body + f"\n- machine: {machine()}\n")
        print(text)
        numbers = {"runs": runs, **summary}
        out = args.out or OUT_DIR / "history.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(numbers, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
