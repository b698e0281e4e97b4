"""What an ensemble costs at scoring time: two model folders scored side by side, in one process.

The NumPy runtime scores every row of the file (already in memory) with each model in turn,
alternating, `--repeats` times: scores only (`Scorer.score_matrix`) and scores with the top-3
reasons (as `aedetect score` writes them). Best and median rows/s of each and their ratio; the
load average is printed beside them (above 1.5: something else ran, rerun).

    aedetect train --data creditcard.csv --out /tmp/m1 --epochs 3 --set members=1
    aedetect train --data creditcard.csv --out /tmp/m3 --epochs 3            # the defaults: 3
    python benchmarks/bench_members.py /tmp/m1 /tmp/m3 [--data creditcard.csv] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs=2, type=Path, help="two model folders (e.g. 1 and 3 networks)")
    ap.add_argument("--data", type=Path, default=None, help="CSV (default: the real ULB file)")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()

    import pyarrow.csv as pacsv

    from aedetect.data.arrow import parse_rows
    from aedetect.serving.explain import top_columns
    from aedetect.serving.runtime import load_scorer

    if args.data is None:
        from aedetect.data.fetch import fetch_creditcard

        args.data = fetch_creditcard()
    scorers = [load_scorer(m) for m in args.models]
    table = pacsv.read_csv(args.data)
    x, _ = parse_rows(table, list(scorers[0].feature_names_in_), scorers[0].preprocessor_,
                      table=scorers[0].schema is not None)

    def scores(s):
        s.score_matrix(x)

    def reasons(s):
        _, contrib = s.score_matrix(x)
        top_columns(s.preprocessor_, x, contrib, 3, arrow=True)  # as the batch scorer calls it

    for s in scorers:  # warm: first-use allocations
        reasons(s)
    times = {(i, kind): [] for i in range(2) for kind in ("scores", "reasons")}
    for _ in range(args.repeats):
        for kind, fn in (("scores", scores), ("reasons", reasons)):
            for i, s in enumerate(scorers):
                start = time.perf_counter()
                fn(s)
                times[(i, kind)].append(time.perf_counter() - start)
    n = len(x)
    print(f"{args.data.name}, {n:,} rows, {args.repeats} alternated repeats; load average at the end "
          f"{os.getloadavg()[0]:.2f}\n")
    print("| model | members | scores only: best rows/s (median) | with top-3 reasons: best rows/s (median) |")
    print("|---|---|---|---|")
    for i, (path, s) in enumerate(zip(args.models, scorers, strict=True)):
        cells = [f"{n / min(times[(i, k)]):,.0f} ({n / statistics.median(times[(i, k)]):,.0f})"
                 for k in ("scores", "reasons")]
        print(f"| {path} | {s.members_} | {cells[0]} | {cells[1]} |")
    for k in ("scores", "reasons"):
        ratio = min(times[(1, k)]) / min(times[(0, k)])
        print(f"\n{k}: the second model takes {ratio:.2f}x the time of the first (best of each)")


if __name__ == "__main__":
    main()
