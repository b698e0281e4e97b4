"""Time entity history adds to the REST service, per transaction (one transaction per request).

Run: PYTHONPATH=src .venv/bin/python benchmarks/bench_history_service.py [--requests 2000]

In process, no HTTP and no network: a payments log (card and terminal history, default windows
up to 30 days) gives the service's starting state (its first days, as a model folder holds it);
then each later transaction, one at a time and in time order, goes through what `/v1/score`
adds for a history model: `HistoryStore.pending` (select the card's and terminal's stored rows,
the one `compute`, store the row, drop rows older than 30 days). Prints the mean and p50/p99 ms
per transaction, and the load average (a shared machine slows everything). `--label-delay DAYS`:
a label-aware model's store, with the label-based risk (the state's rows keep their labels, the
store the delay plus 30 days of rows).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

from aedetect.data.generate import generate_payment_log
from aedetect.data.history import add_history
from aedetect.data.infer import infer_schema
from aedetect.serving.history_store import HistoryStore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--label-delay", type=float, default=None, metavar="DAYS",
                    help="with label-based risk, labels counted DAYS after each payment")
    args = ap.parse_args()
    log = generate_payment_log(n_days=40, n_cards=300, n_terminals=60, seed=0)
    schema = infer_schema(log, label_column="is_fraud", time_column="timestamp").with_overrides(
        exclude_columns=["fraud_kind"], entity_columns=["card_id", "terminal_id"])
    if args.label_delay is not None:
        from aedetect.data.schema import DatasetSchema

        history = {**schema.history.model_dump(), "label_delay": args.label_delay * 86_400}
        schema = DatasetSchema.model_validate({**schema.model_dump(), "history": history})
    cut = len(log) - args.requests - args.warmup
    if cut < 1000:
        raise SystemExit(f"the log has {len(log)} rows; ask for fewer --requests")
    _, state = add_history(log.iloc[:cut], schema)
    store = HistoryStore(schema, state)
    cols = [schema.time, *schema.history.entities, schema.history.amount]
    later = [log.iloc[[i]][cols].reset_index(drop=True) for i in range(cut, len(log))]
    for row in later[:args.warmup]:
        store.add(row)
    took = []
    for row in later[args.warmup:]:
        start = time.perf_counter()
        with store.pending(row):
            pass
        took.append(time.perf_counter() - start)
    ms = np.array(took) * 1e3
    load = os.getloadavg()
    print(f"history per transaction (select + compute + store), {len(ms)} requests of 1 transaction, "
          f"{len(store):,} rows stored for {store.entity_values('card_id')} cards"
          + (f", label-based risk (delay {args.label_delay:g} d)" if args.label_delay is not None else "") + ":")
    print(f"  mean {ms.mean():.3f} ms, p50 {np.median(ms):.3f} ms, p99 {np.percentile(ms, 99):.3f} ms")
    print(f"  load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs; "
          f"pandas {pd.__version__}")


if __name__ == "__main__":
    main()
