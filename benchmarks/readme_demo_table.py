"""The README's demo table: render it from a metrics.json, read it from the README, or replace it.

The table between `<!-- demo-table:start -->` and `<!-- demo-table:end -->` in README.md is
what `aedetect demo` prints. It is rendered here by the CLI's own code (`metrics_table` of
`aedetect.cli.ui`) on a console as wide as the CLI's stdout console when it is not a terminal,
so a table rendered here from the metrics.json a demo wrote is the table that demo printed.
`tests/test_readme.py` uses these functions; `make check-readme` reruns the demo and compares.

    python benchmarks/readme_demo_table.py runs/demo/metrics.json           # print the block
    python benchmarks/readme_demo_table.py runs/demo/metrics.json --write   # put it in README.md
                                                                            # and docs/demo-metrics.json
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
METRICS_COPY = ROOT / "docs" / "demo-metrics.json"  # the metrics.json of the run in the README
START, END = "<!-- demo-table:start -->", "<!-- demo-table:end -->"
# `aedetect.cli.app.out`: 200 columns when stdout is not a terminal (the table is 78 wide).
CLI_WIDTH = 200


def render(metrics: dict, guide_column: bool = True) -> str:
    """The table as the CLI prints it, trailing spaces removed from each line. `guide_column`:
    the demo shows the guide's column on the credit-card data (the README's run)."""
    from rich.console import Console

    from aedetect.cli.ui import metrics_table

    buf = io.StringIO()  # not a terminal: no colour codes, as in a redirected stdout
    Console(file=buf, width=CLI_WIDTH, color_system=None).print(metrics_table(metrics, guide_column=guide_column))
    return normalise(buf.getvalue())


def normalise(text: str) -> str:
    """Trailing spaces off every line (editors strip them; Rich pads the centred title), no
    blank lines at either end."""
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")


def readme_block(text: str) -> str:
    """The table between the markers, without its code fence."""
    m = re.search(re.escape(START) + r"\n```text\n(.*?)\n```\n" + re.escape(END), text, re.S)
    if m is None:
        raise ValueError(f"no {START} ... {END} block holding a ```text fence")
    return normalise(m.group(1))


def replace_block(text: str, table: str) -> str:
    readme_block(text)  # the block must be there
    return re.sub(re.escape(START) + r".*?" + re.escape(END),
                  lambda _: f"{START}\n```text\n{table}\n```\n{END}", text, count=1, flags=re.S)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("metrics", type=Path, help="metrics.json written by `aedetect demo`")
    ap.add_argument("--write", action="store_true",
                    help="replace the README's block and copy the metrics to docs/demo-metrics.json")
    args = ap.parse_args()
    table = render(json.loads(args.metrics.read_text()))
    if not args.write:
        print(table)
        return
    README.write_text(replace_block(README.read_text(), table))
    if args.metrics.resolve() != METRICS_COPY.resolve():
        shutil.copyfile(args.metrics, METRICS_COPY)
    print(f"wrote the table into {README} and the metrics to {METRICS_COPY}; update the numbers "
          "the README quotes around it")


if __name__ == "__main__":
    main()
