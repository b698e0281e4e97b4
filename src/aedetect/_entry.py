"""The `aedetect` console script: Ctrl-C while the program is still starting ends quietly.

Importing the CLI (Typer, Rich, pydantic) takes a moment; a Ctrl-C or SIGTERM in that moment
must not print a traceback. From `cli.main` on, the CLI handles both itself.

NumPy's hint to back large arrays with transparent huge pages is off for the command (NumPy's
`NUMPY_MADVISE_HUGEPAGE`, read when NumPy is imported; set it to 1 to keep the hint). Where the
kernel compacts memory for such a hint on first touch (`defrag` set to `madvise`, a common default),
the first history computation of 1M payments took 2.3-3.5 s with it and 0.9 s without, and ULB
training was no slower (docs/history.md, "Speed and memory").
"""

import os
import signal
import sys

os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")


def _interrupted(*_) -> None:
    raise KeyboardInterrupt


def main() -> None:
    try:
        signal.signal(signal.SIGTERM, _interrupted)
        from aedetect.cli.app import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("interrupted while starting; nothing was written\n")
        sys.exit(130)
    cli_main()
