"""Batch scoring against the cost of reading the file: whole processes, paired and alternated.

Each repeat runs, one after the other, the floor (a Python process that imports pyarrow and
reads the CSV with `pyarrow.csv.read_csv`, all cores) and `aedetect score` of the same file
(3 reasons per row, CSV out, the defaults). Medians over `--repeats` pairs of wall seconds,
CPU seconds and peak RSS, and their ratios; the load average is printed beside them (a figure
taken above 1.5 is no measurement: run it alone).

Then in-process rows/s of scoring with reasons (`Scorer.score_matrix` and the top-3 reasons,
`aedetect.serving.explain.top_columns`) on the file's rows already in memory: the model's
own cost, without reading or writing. For a model with entity history, `score_table` on the
rows in memory (the history computed after the model's state, then the scores; reasons or
none), as `aedetect score` computes a file in one chunk.

Last, a lower bound of any whole-process scorer of the model, from the CPU work it cannot
avoid: the plain read's CPU seconds (parsing the file) plus the in-process CPU seconds of the
network with the 3 reasons, divided by the cores, as if nothing else ran (no import, check or
write) and the work spread perfectly. Its ratio to the read's wall time is as low as the
whole process's ratio can go without a cheaper model.

    python benchmarks/bench_batch.py [--data creditcard.csv] [--model DIR] [--repeats 5]

Without --model, a model is trained once (`aedetect train --epochs 2`: speed does not depend on
the epochs). Without --data, the real ULB file (fetched and verified).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import report, run_process, table


def in_process_rate(model_dir: Path, data: Path, repeats: int) -> tuple[int, tuple, tuple]:
    """Rows, and the (wall, CPU) seconds of the fastest of `repeats` passes of score_matrix +
    top-3 reasons over the whole file in memory, and of the same without reasons."""
    import pyarrow.csv as pacsv

    from aedetect.data.arrow import parse_rows
    from aedetect.serving.explain import top_columns
    from aedetect.serving.runtime import load_scorer

    scorer = load_scorer(model_dir)
    table_ = pacsv.read_csv(data)
    if scorer.schema is not None and scorer.schema.history is not None:
        # entity history: computed from the rows' time, entities and amount after the model's
        # state, as `aedetect score` does (`score_table`, the file in one chunk)
        from aedetect.serving.batch import score_table

        def with_reasons():
            score_table(scorer, table_, top_k=3)

        def scores_only():
            score_table(scorer, table_, top_k=0)

        with_reasons()
        return table_.num_rows, best_of(with_reasons, repeats), best_of(scores_only, repeats)
    x, _ = parse_rows(table_, list(scorer.feature_names_in_), scorer.preprocessor_,
                      table=scorer.schema is not None)

    def with_reasons():
        _, contrib = scorer.score_matrix(x)
        top_columns(scorer.preprocessor_, x, contrib, 3, arrow=True)  # as the batch scorer calls it

    with_reasons()  # warm: first-use allocations
    return len(x), best_of(with_reasons, repeats), best_of(lambda: scorer.score_matrix(x), repeats)


def best_of(fn, repeats: int) -> tuple[float, float]:
    """The wall and CPU seconds (this process, every thread) of the fastest of `repeats` calls."""
    times = []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - start, time.process_time() - cpu))
    return min(times)


def bound_text(read: list[float], work_cpu: float) -> str:
    """A lower bound of any whole-process scorer of this model, from the CPU work it cannot
    avoid: parsing the file (the plain read's CPU seconds, its start-up included) and the
    network with the 3 reasons (the in-process CPU seconds), spread perfectly over every core,
    with no import of the scorer, no check of the values and no writing."""
    cores = os.cpu_count() or 1
    bound = (read[1] + work_cpu) / cores
    return (f"Lower bound of any scorer of this model on these {cores} cores: (read CPU {read[1]:.3f} s + "
            f"network and reasons CPU {work_cpu:.3f} s) / {cores} = {bound:.3f} s, "
            f"**{bound / read[0]:.2f}x the read's wall time**, before any import, check or write.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="CSV to score (default: the real ULB file)")
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: trained once here)")
    ap.add_argument("--repeats", type=int, default=5, help="paired whole-process runs (median)")
    args = ap.parse_args()
    cli = str(Path(sys.executable).with_name("aedetect"))
    data = args.data
    if data is None:
        from aedetect.data.fetch import fetch_creditcard

        data = fetch_creditcard()
    with tempfile.TemporaryDirectory(prefix="aedetect-bench-") as tmp:
        work = Path(tmp)
        model = args.model
        if model is None:
            model = work / "model"
            run_process([cli, "train", "--data", str(data), "--out", str(model), "--epochs", "2", "-q"])
        commands = {
            "pyarrow read_csv": [sys.executable, "-c", f"import pyarrow.csv as c; c.read_csv({str(data)!r})"],
            "aedetect score": [cli, "score", "--model", str(model), "--data", str(data),
                               "--out", str(work / "scored.csv"), "--overwrite", "-q"],
        }
        runs: dict[str, list] = {name: [] for name in commands}
        loads = []
        for _ in range(args.repeats):
            for name, cmd in commands.items():  # alternated: drift in the machine hits both
                runs[name].append(run_process(cmd))
            loads.append(os.getloadavg()[0])
        med = {name: [statistics.median(r[i] for r in rows) for i in range(4)] for name, rows in runs.items()}
        n, with_reasons, scores_only = in_process_rate(model, data, 3)
    load = os.getloadavg()[0]
    base, ours = med["pyarrow read_csv"], med["aedetect score"]
    rows = [[name, *m] for name, m in med.items()]
    rows.append(["ratio (score / read)", *(a / b for a, b in zip(ours, base, strict=True))])
    body = (f"{data.name}, {n:,} rows; median of {args.repeats} alternated pairs; load average during "
            f"the pairs {min(loads):.2f}-{max(loads):.2f}\n\n"
            + table(["whole process", "wall s", "CPU s", "peak RSS MB", "of which system CPU s"], rows)
            + "\n\nSystem CPU is mostly page faults of fresh memory; on a VM where they are dear it moves "
              "the wall time of either process by a second or more, so each pair is listed too.\n\n"
              "Each pair's wall seconds (read, score): "
            + ", ".join(f"({a[0]:.2f}, {b[0]:.2f})" for a, b in zip(runs["pyarrow read_csv"],
                                                                  runs["aedetect score"], strict=True))
            + "\n\n" + table(["in process, rows in memory", "s", "CPU s", "rows/s"],
                             [["scores + top-3 reasons", *with_reasons, n / with_reasons[0]],
                              ["scores only", *scores_only, n / scores_only[0]]])
            + "\n\n" + bound_text(base, with_reasons[1])
            + f"\n\nload average at the end {load:.2f}")
    if max(loads + [load]) > 1.5:
        body += "\n\n**A load average above 1.5: something else ran; these figures are no measurement.**"
    print(body)
    report("batch", "Batch scoring against reading the file", body)


if __name__ == "__main__":
    main()
