"""Run every benchmark, each in its own process, and gather their tables in runs/bench/all.md.

    python benchmarks/run_all.py            # what `make bench` runs (about 10 minutes on 2 cores)
    python benchmarks/run_all.py --quick    # small sizes, a smoke run of every script
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from common import OUT_DIR

HERE = Path(__file__).parent
FULL = {
    "train": ["--max-epochs", "50", "--pyod-epochs", "5"],
    "score": ["--rows", "10000,100000,1000000", "--repeats", "2"],
    "growth": ["--rows", "10000,100000,1000000", "--width", "30,100,300"],
    "service": ["--requests", "1000", "--seconds", "15"],
    "service_wrk": ["--seconds", "10"],
    "batch": ["--repeats", "5"],
    "score_memory": ["--rows", "200000"],
    "runtime": ["--pairs", "5", "--requests", "500", "--repeats", "3"],
}
QUICK = {
    "train": ["--max-epochs", "3", "--pyod-epochs", "1"],
    "score": ["--rows", "10000", "--repeats", "1"],
    "growth": ["--rows", "10000,30000", "--width", "30,60", "--width-rows", "10000"],
    "service": ["--requests", "100", "--seconds", "5"],
    "runtime": ["--pairs", "1", "--requests", "50", "--repeats", "1"],
    "service_wrk": ["--seconds", "2"],
    "batch": ["--repeats", "1"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="", help="comma-separated names, e.g. train,score")
    args = ap.parse_args()
    plan = QUICK if args.quick else FULL
    names = [n for n in plan if not args.only or n in args.only.split(",")]
    seconds, failed = {}, []
    for name in names:
        script = HERE / f"bench_{name}.py"
        if not script.is_file():
            print(f"skipping {name}: {script} is not there")
            continue
        start = time.perf_counter()
        rc = subprocess.call([sys.executable, str(script), *plan[name]])
        seconds[name] = time.perf_counter() - start
        if rc != 0:
            failed.append(name)
    parts = [(OUT_DIR / f"{n}.md").read_text() for n in plan if (OUT_DIR / f"{n}.md").is_file()]
    times = ", ".join(f"{n} {s:.0f} s" for n, s in seconds.items())
    text = "\n".join(parts) + f"\nBenchmark run times: {times}; total {sum(seconds.values()):.0f} s.\n"
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "all.md").write_text(text)
    print(f"\nwrote {OUT_DIR / 'all.md'} ({times})")
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
