"""The `aedetect` command: a thin Typer layer over the library functions.

The commands live beside this module by what they do (`data_commands`, `train_commands`,
`score_commands`); this module is the command table: it names each one, in the order `--help`
lists them.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape

from aedetect.cli import data_commands, review_commands, score_commands, train_commands
from aedetect.cli.common import UsageError, console, out  # noqa: F401 (the CLI's surface)
from aedetect.errors import AedetectError

app = typer.Typer(help="Anomaly detection in tabular data with autoencoders.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Fetch, generate and convert data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
schema_app = typer.Typer(help="Infer the schema of a table.", no_args_is_help=True)
app.add_typer(schema_app, name="schema")
review_app = typer.Typer(help="The review app for investigators, its users and its database "
                         "(needs the review extra).", invoke_without_command=True)
review_app.callback()(review_commands.review)
app.add_typer(review_app, name="review")
users_app = typer.Typer(help="Users of the review app.", no_args_is_help=True)
review_app.add_typer(users_app, name="users")
alerts_app = typer.Typer(help="Alerts in from scored files, labels out.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")
spark_app = typer.Typer(help="Score on Apache Spark (needs the spark extra).", no_args_is_help=True)
app.add_typer(spark_app, name="spark")


def _version(value: bool) -> None:
    if value:
        from aedetect import __version__

        print(f"aedetect {__version__}")
        raise typer.Exit()


@app.callback()
def _main_options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="print the version and exit")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="only errors and results: no "
                                        "progress bars or status lines")] = False,
):
    """Anomaly detection in tabular data with autoencoders."""
    console.quiet = quiet


for command in (train_commands.train, train_commands.evaluate, train_commands.compare,
                score_commands.score, score_commands.serve, score_commands.monitor,
                score_commands.export, train_commands.demo):
    app.command()(command)
schema_app.command("infer")(data_commands.schema_infer)
data_app.command("fetch")(data_commands.data_fetch)
data_app.command("generate")(data_commands.data_generate)
data_app.command("to-tfrecord")(data_commands.data_to_tfrecord)
spark_app.command("score")(score_commands.spark_score)
review_app.command("migrate")(review_commands.migrate)
users_app.command("add")(review_commands.users_add)
users_app.command("list")(review_commands.users_list)
alerts_app.command("load")(review_commands.alerts_load)
alerts_app.command("export")(review_commands.alerts_export)


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
