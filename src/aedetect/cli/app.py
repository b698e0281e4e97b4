"""The `aedetect` command: a thin Typer layer over the library functions.

The commands live beside this module by what they do (`data_commands`, `train_commands`,
`score_commands`); this module is the command table: it names each one, in the order `--help`
lists them.
"""

from __future__ import annotations

import functools
import inspect
import sys
from typing import Annotated

import typer
from rich.markup import escape

from aedetect.cli import data_commands, review_commands, score_commands, train_commands
from aedetect.cli.common import UsageError, console, fill_lazy_help, out  # noqa: F401 (the CLI's surface)
from aedetect.errors import AedetectError

QUIET_HELP = "only errors and results: no progress bars or status lines"
QuietOpt = Annotated[bool, typer.Option("-q", "--quiet", help=QUIET_HELP)]


def _with_quiet(command):
    """`command` taking -q/--quiet after its name too (`aedetect evaluate ... -q`), as well as
    before it (`aedetect -q evaluate ...`, the main callback's)."""
    sig = inspect.signature(command, eval_str=True)  # Typer reads the annotations as objects

    @functools.wraps(command)
    def run(*args, quiet: bool = False, **kwargs):
        if quiet:
            console.quiet = True
        return command(*args, **kwargs)

    quiet = inspect.Parameter("quiet", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=QuietOpt)
    run.__signature__ = sig.replace(parameters=[*sig.parameters.values(), quiet])
    run.__annotations__ = {**{k: v.annotation for k, v in sig.parameters.items()}, "quiet": QuietOpt}
    return run


# Help in Click's plain layout: each option on its own line with its help wrapped beside it or
# below, so nothing is cut at 80 columns (Rich's boxed table cut option names and defaults to
# fit there: `--categorical-colu...`); help strings are plain text, no Rich markup. A command's
# line in its group's list is its whole first paragraph, wrapped (Click would cut it with "...").
PLAIN = dict(rich_markup_mode=None)


def _group(help: str, **kwargs) -> typer.Typer:
    return typer.Typer(help=help, **PLAIN, **kwargs)


class _Command(typer.core.TyperCommand):
    """A command whose option help is completed when it is shown (`common.fill_lazy_help`)."""

    def format_help(self, ctx, formatter) -> None:
        fill_lazy_help(self.params)
        super().format_help(ctx, formatter)


def _add(group: typer.Typer, command, name: str | None = None) -> None:
    """Register `command` in `group`, with -q and its first paragraph as its line in the list."""
    first = inspect.cleandoc(command.__doc__ or "").split("\n\n")[0]
    group.command(name, cls=_Command, short_help=" ".join(first.split()))(_with_quiet(command))


app = _group("Anomaly detection in tabular data with autoencoders.", no_args_is_help=True,
             pretty_exceptions_enable=False)
data_app = _group("Fetch, generate and convert data.", no_args_is_help=True)
schema_app = _group("Infer the schema of a table.", no_args_is_help=True)
review_app = _group("The review app for investigators, its users and its database (needs the review "
                    "extra).", invoke_without_command=True)
review_app.callback()(_with_quiet(review_commands.review))
users_app = _group("Users of the review app.", no_args_is_help=True)
alerts_app = _group("Alerts in from scored files, labels and thresholds out.", no_args_is_help=True)
spark_app = _group("Score on Apache Spark (needs the spark extra).", no_args_is_help=True)
for parent, child, name in ((app, data_app, "data"), (app, schema_app, "schema"), (app, review_app, "review"),
                            (review_app, users_app, "users"), (app, alerts_app, "alerts"),
                            (app, spark_app, "spark")):
    parent.add_typer(child, name=name, short_help=child.info.help)


def _version(value: bool) -> None:
    if value:
        from aedetect import __version__

        print(f"aedetect {__version__}")
        raise typer.Exit()


@app.callback()
def _main_options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="print the version and exit")] = False,
    quiet: QuietOpt = False,
):
    """Anomaly detection in tabular data with autoencoders."""
    console.quiet = quiet


for command in (train_commands.train, train_commands.evaluate, train_commands.compare,
                score_commands.score, score_commands.serve, score_commands.monitor,
                score_commands.export, train_commands.demo):
    _add(app, command)
_add(schema_app, data_commands.schema_infer, "infer")
_add(data_app, data_commands.data_fetch, "fetch")
_add(data_app, data_commands.data_generate, "generate")
_add(data_app, data_commands.data_to_tfrecord, "to-tfrecord")
_add(spark_app, score_commands.spark_score, "score")
_add(review_app, review_commands.migrate, "migrate")
_add(users_app, review_commands.users_add, "add")
_add(users_app, review_commands.users_list, "list")
_add(alerts_app, review_commands.alerts_load, "load")
_add(alerts_app, review_commands.alerts_export, "export")
_add(alerts_app, review_commands.alerts_threshold, "threshold")


def main() -> None:
    try:
        app()
    except AedetectError as exc:
        console.quiet = False
        console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2 if isinstance(exc, UsageError) else 1)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; nothing was written[/yellow]")
        sys.exit(130)
    except OSError as exc:  # a file the system refused (disk full, permissions): one line
        from aedetect.files import os_reason

        console.quiet = False  # -q hides progress, never an error
        where = f"{exc.filename}: " if exc.filename else ""
        console.print(f"[bold red]error:[/bold red] {escape(where + os_reason(exc))}",
                      highlight=False, soft_wrap=True)
        sys.exit(1)



if __name__ == "__main__":  # `python -m aedetect.cli` is the way; this path runs the same start-up
    from aedetect._entry import main as _start

    _start()
