"""Whole `aedetect` commands timed in fresh processes, this code beside a baseline revision's,
interleaved in one run: wall and CPU seconds and peak memory per command, and the ratios.

For changes that move code rather than change a computation (a re-layout, an import rule), the
commands a user runs are the measure: start-up, scoring a file, the demo.

    mkdir -p /tmp/base && git archive fe14008 src | tar -x -C /tmp/base    # the baseline's code
    python benchmarks/bench_commands.py --baseline-src /tmp/base/src --repeats 3
    python benchmarks/bench_commands.py --baseline-src /tmp/base/src --only help,score

Both sides run with the same interpreter and installed packages; only `PYTHONPATH` differs. The
model for `score` is trained once by each side's own `aedetect train`. Figures are medians over
`--repeats`; the load average is printed beside them (a figure taken above 1.5 is no measurement).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from common import run_process as run


def commands(work: Path, side: str, data: str) -> dict[str, list[str]]:
    cli = [str(Path(sys.executable).with_name("aedetect"))]  # the console script users run
    model = work / f"model-{side}"
    return {
        "help": [*cli, "--help"],
        # the scoring stack by paths every revision has (a forwarding module in the new layout)
        "import scoring": [sys.executable, "-c", "import aedetect.scoring; from aedetect import load_scorer"],
        "score": [*cli, "score", "--model", str(model), "--data", data, "--out", str(work / f"s-{side}.csv")],
        "demo": [*cli, "demo", "--out", str(work / f"demo-{side}"), "--seed", "0"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline-src", required=True, help="the src/ folder of the revision to compare against")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", default="help,import scoring,score,demo", help="comma-separated commands")
    ap.add_argument("--data", default=None, help="table to score (default: the real ULB file, fetched)")
    args = ap.parse_args()
    here = str(Path(__file__).resolve().parents[1] / "src")
    sides = {"this": here, "baseline": args.baseline_src}
    wanted = [c.strip() for c in args.only.split(",")]
    with tempfile.TemporaryDirectory(prefix="aedetect-bench-") as tmp:
        work = Path(tmp)
        data = args.data
        if data is None:
            from aedetect.data.fetch import fetch_creditcard

            data = str(fetch_creditcard())
        if "score" in wanted:  # each side trains its own model once, small and quick
            for side, src in sides.items():
                run([str(Path(sys.executable).with_name("aedetect")), "train", "--data", data, "--out",
                     str(work / f"model-{side}"), "--epochs", "2"], src)
        figures: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
        for _ in range(args.repeats):
            for name in wanted:
                for side, src in sides.items():  # interleaved: drift in the machine hits both
                    cmd = commands(work, side, data)[name]
                    # outputs of the previous repeat removed: a revision with the --overwrite rule
                    # refuses an existing output, and a baseline before it has no such option
                    for old in (work / f"s-{side}.csv", work / f"demo-{side}"):
                        shutil.rmtree(old) if old.is_dir() else old.unlink(missing_ok=True)
                    figures.setdefault((name, side), []).append(run(cmd, src))
    load = os.getloadavg()[0]
    print(f"{'command':<16} {'side':<9} {'wall s':>8} {'CPU s':>8} {'peak MB':>8}   load avg {load:.2f}")
    for name in wanted:
        med = {}
        for side in sides:
            rows = figures[(name, side)]
            med[side] = [statistics.median(r[i] for r in rows) for i in range(3)]
            print(f"{name:<16} {side:<9} {med[side][0]:>8.3f} {med[side][1]:>8.3f} {med[side][2]:>8.0f}")
        ratio = [med["this"][i] / med["baseline"][i] for i in range(3)]
        print(f"{name:<16} {'x base':<9} {ratio[0]:>8.3f} {ratio[1]:>8.3f} {ratio[2]:>8.3f}")
    if load > 1.5:
        print(f"load average {load:.2f} > 1.5: something else ran; these figures are no measurement")


if __name__ == "__main__":
    main()
