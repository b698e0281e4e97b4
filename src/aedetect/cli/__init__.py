"""The command line: Typer commands (`app`), console output (`ui`), training progress (`progress`).

Each command is a thin layer over a library call; `python -m aedetect.cli` runs it.
"""

from aedetect._imports import lazy_exports

__all__ = ["main"]
__getattr__ = lazy_exports(__name__, {"main": "app"})
