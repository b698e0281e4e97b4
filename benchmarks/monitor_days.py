"""Drift monitoring on the real ULB data: train on the first day, monitor the second day.

Writes runs/monitor/day1.csv (Time < 86,400) and day2.csv, trains with the time protocol on
day 1 (kept when runs/monitor/model-day1 exists, unless --retrain), then runs `aedetect
monitor` on day 2 in 4-hour windows (report in runs/monitor/report), on day 2 as one window,
and on day 1 itself in 4-hour windows (the control: how much the daily cycle alone moves).
With --warm-start it also continues training the day-1 model on day 2 before noon and monitors
day 2 after noon with both models. It prints each command line it ran before its output.

    .venv/bin/python benchmarks/monitor_days.py [--retrain] [--epochs N] [--warm-start]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

from aedetect.data.fetch import fetch_creditcard

OUT = Path("runs/monitor")
AEDETECT = str(Path(sys.executable).with_name("aedetect"))


def run(*args: str) -> int:
    print("$ aedetect " + " ".join(args), flush=True)
    return subprocess.run([AEDETECT, *args]).returncode


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--warm-start", action="store_true")
    ap.add_argument("--warm-epochs", type=int, default=20)
    ap.add_argument("--only-compare", action="store_true",
                    help="only the last step: both models on day 2 after noon (needs an earlier run)")
    a = ap.parse_args()
    if a.only_compare:
        return compare_on_afternoon()
    OUT.mkdir(parents=True, exist_ok=True)
    df = pd.read_csv(fetch_creditcard())
    day1, day2 = df[df["Time"] < 86_400], df[df["Time"] >= 86_400]
    day1.to_csv(OUT / "day1.csv", index=False)
    day2.to_csv(OUT / "day2.csv", index=False)
    print(f"day 1: {len(day1):,} rows, {int(day1['Class'].sum())} frauds; "
          f"day 2: {len(day2):,} rows, {int(day2['Class'].sum())} frauds")
    epochs = ["--epochs", str(a.epochs)] if a.epochs else []
    model = OUT / "model-day1"
    if a.retrain or not model.exists():
        run("train", "--data", str(OUT / "day1.csv"), "--protocol", "time", "--seed", str(a.seed),
            "--out", str(model), "--overwrite", *epochs)
    for data, window, report in (("day2.csv", "4h", "report"), ("day2.csv", "1d", "report-1d"),
                                 ("day1.csv", "4h", "report-day1")):
        rc = run("monitor", "--model", str(model), "--data", str(OUT / data), "--window", window,
                 "--report", str(OUT / report), "--overwrite")  # a rerun replaces its reports
        print(f"exit code {rc}")
    if a.warm_start:
        noon = 86_400 + 43_200
        day2[day2["Time"] < noon].to_csv(OUT / "day2-am.csv", index=False)
        day2[day2["Time"] >= noon].to_csv(OUT / "day2-pm.csv", index=False)
        run("train", "--warm-start", str(OUT / "model-day1"), "--data", str(OUT / "day2-am.csv"),
            "--protocol", "time", "--seed", str(a.seed), "--out", str(OUT / "model-warm"),
            "--overwrite", "--epochs", str(a.warm_epochs))
        for name in ("model-day1", "model-warm"):
            rc = run("monitor", "--model", str(OUT / name), "--data", str(OUT / "day2-pm.csv"),
                     "--window", "4h", "--report", str(OUT / f"report-pm-{name}"), "--overwrite")
            print(f"exit code {rc}")
        compare_on_afternoon()


def compare_on_afternoon() -> None:
    """The day-1 model and its warm start on the same later rows, which neither trained on."""
    from rich.console import Console

    from aedetect.cli.ui import comparison_table
    from aedetect.model.detector import load_detector
    from aedetect.monitoring.compare import compare_models
    from aedetect.monitoring.reference import load_reference

    pm = pd.read_csv(OUT / "day2-pm.csv")
    models = {name: (load_detector(OUT / name), load_reference(OUT / name))
              for name in ("model-day1", "model-warm")}
    rows = compare_models(models, pm, pm["Class"].to_numpy(), skip=("Time",))
    Console(width=120).print(comparison_table(rows, f"day 2 after noon ({len(pm):,} rows, "
                                              f"{int(pm['Class'].sum())} frauds)"))


if __name__ == "__main__":
    main()
