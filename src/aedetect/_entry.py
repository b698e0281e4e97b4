"""The `aedetect` console script: Ctrl-C while the program is still starting ends quietly.

Importing the CLI (Typer, Rich, pydantic) takes a moment; a Ctrl-C or SIGTERM in that moment
must not print a traceback. From `cli.main` on, the CLI handles both itself.
"""

import signal
import sys


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
