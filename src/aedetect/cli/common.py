"""What every command shares: the consoles, the common options and the helpers
that read data, load models and build settings the same way for each command."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter quiet

import typer  # noqa: E402
from pydantic import ValidationError  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402

from aedetect.errors import AedetectError  # noqa: E402

console = Console(stderr=True, soft_wrap=True)  # messages are not cut at 80 columns
# Tables on stdout: full width when piped or redirected (Rich would cut them to 80 columns).
out = Console(width=None if sys.stdout.isatty() else 200)


class UsageError(AedetectError):
    """A wrong option or combination of options: exit status 2, like Click's own usage errors."""


# Each option's help says what it does in the commands that share it; a command whose option
# means something else declares its own (evaluate --data, data generate --seed).
DataOpt = Annotated[str, typer.Option(
    "--data", help="a table (.csv, .csv.gz, .csv.zst, .parquet), 'creditcard' to fetch the real "
    "ULB file, or a folder of Parquet/CSV shards of normal rows, streamed")]
CreditDataOpt = Annotated[str, typer.Option(
    "--data", help="'creditcard' to fetch the real ULB file, or a .csv/.parquet file with its "
    "columns (Time, V1..V28, Amount, Class)")]
LabelOpt = Annotated[str | None, typer.Option(
    help="the 0/1 label column [default: inferred: a 0/1 column named like class, label, "
    "is_fraud, y]")]
TimeOpt = Annotated[str | None, typer.Option(
    help="the time column, seconds or datetimes [default: inferred]")]
IdsOpt = Annotated[str, typer.Option(help="comma-separated id columns (kept, never read by the "
                                     "model)")]
ExcludeOpt = Annotated[str, typer.Option(help="comma-separated columns to ignore")]
CategoricalOpt = Annotated[str, typer.Option(help="comma-separated columns to treat as categories")]
EntityOpt = Annotated[str, typer.Option(help="comma-separated entity columns (card, terminal, customer "
                                        "ids): each row gets what its entities did before it "
                                        "(counts, amount against the usual, new counterparties over "
                                        "1h/1d/7d/30d; docs/history.md). Needs a time column")]
# One rule for every command that writes a file or folder (aedetect.files.check_output): an
# existing output is refused, naming it and this option, unless --overwrite is given; an input
# is never overwritten, and a folder is replaced only when aedetect wrote it.
OverwriteOpt = Annotated[bool, typer.Option(
    "--overwrite", help="replace an existing output (a folder only when aedetect wrote it); without "
    "it, an existing output is refused")]
LabelsDbOpt = Annotated[str | None, typer.Option(
    "--labels-db", help="the review store's verdicts as --labels, read from its database URL "
    "(sqlite:///alerts.db, postgresql+psycopg://...)")]
LabelsIdOpt = Annotated[str | None, typer.Option(
    help="--data's transaction id column, for --labels or --labels-db [default: the column "
    "transaction_id, else the table's one id column]")]
SchemaOpt = Annotated[Path | None, typer.Option(
    "--schema", help="schema file (.yaml/.json, see `aedetect schema infer`) instead of inference")]
SeedOpt = Annotated[int, typer.Option(help="seed for the split, the weights and the shuffling")]
SplitSeedOpt = Annotated[int, typer.Option(help="seed for the split")]
ProtocolOpt = Annotated[str, typer.Option(help="split protocol: 'guide' or 'time'")]


# Option help that takes the estimator or the metrics (scikit-learn, ~0.9 s) to write is a
# placeholder, filled in by `fill_lazy_help` only when a command's help is shown: running
# `aedetect score` never imports what only `aedetect train --help` needs.
SETTINGS_PLACEHOLDER = "{settings}"
RULES_PLACEHOLDER = "{threshold rules}"


def settings_help_text() -> str:
    from aedetect.training.config import settings_help

    return settings_help()


def rules_help() -> str:
    from aedetect.model.thresholds import RULES

    return ("threshold rule: " + "; ".join(f"{r.name}: {r.description}" for r in RULES.values())
            + " [default: normal_percentile]")


_LAZY_HELP = {SETTINGS_PLACEHOLDER: settings_help_text, RULES_PLACEHOLDER: rules_help}


def fill_lazy_help(params) -> None:
    """Replace the placeholders in the help of Click parameters `params` (before help is shown)."""
    for p in params:
        for placeholder, text in _LAZY_HELP.items():
            if isinstance(getattr(p, "help", None), str) and placeholder in p.help:
                p.help = p.help.replace(placeholder, text())


def need_tensorflow():
    """Load TensorFlow (quietly) before any module that needs it; --help and errors stay fast."""
    from aedetect._imports import import_tensorflow_quietly

    try:
        import_tensorflow_quietly()
    except ModuleNotFoundError as exc:  # a scoring-only install: `score` and `serve` still work
        raise AedetectError(f"this command needs TensorFlow ({exc}); install it with "
                            "pip install 'aedetect[train]'") from None


def load_credit_table(data: str, cache_dir: Path | None = None):
    from aedetect.cli.ui import fetch_with_progress
    from aedetect.data.io import read_table

    path = fetch_with_progress(cache_dir) if data == "creditcard" else Path(data)
    with console.status(f"reading {escape(str(path))}"):
        return read_table(path), path


def input_path(data: str | Path) -> Path | None:
    """The file or folder `--data` names, for the output checks (`aedetect.files.check_output`);
    None for 'creditcard', fetched into the cache."""
    return None if str(data) == "creditcard" else Path(data)


def split_names(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def read_data(data: str, cache_dir: Path | None = None):
    from aedetect.cli.ui import fetch_with_progress
    from aedetect.data.io import read_raw

    path = fetch_with_progress(cache_dir) if data == "creditcard" else Path(data)
    with console.status(f"reading {escape(str(path))}"):
        return read_raw(path), path


def load_table(data: str, schema_file=None, label_column=None, time_column=None, id_columns="",
                exclude_columns="", categorical_columns="", schema=None, entity_columns=""):
    """Read a table, resolve its schema (`schema` as given, a file, or inferred, then the
    overrides), check it."""
    from aedetect.data.infer import resolve_schema
    from aedetect.data.io import needs_text_reread, read_raw
    from aedetect.data.schema import check_table

    df, path = read_data(data)
    if schema is None:
        schema = resolve_schema(df, schema_file=str(schema_file) if schema_file else None,
                                label_column=label_column, time_column=time_column,
                                id_columns=split_names(id_columns), exclude_columns=split_names(exclude_columns),
                                categorical_columns=split_names(categorical_columns),
                                entity_columns=split_names(entity_columns))
    if needs_text_reread(path, df, schema):  # codes as written, as `score` reads them
        with console.status(f"reading {escape(str(path))} again: categories, booleans and dates as text"):
            df = read_raw(path, schema)
    df, unknown = check_table(df, schema, source=str(path))
    if unknown:
        console.print(f"[yellow]warning: {escape(str(path))}: column(s) {escape(str(unknown))} are "
                      "not in the schema; ignored[/yellow]")
    return df, path, schema



def train_config(preset: str = "default", config_file: Path | None = None, settings: list[str] | None = None,
            **flags):
    """A TrainConfig: preset, then --config FILE, then --set key=value, then the common flags
    (None = not given)."""
    from pydantic import ValidationError as PydanticError

    from aedetect.training.config import build_config, parse_settings, read_config_file

    try:
        layers = [read_config_file(config_file)] if config_file is not None else []
        layers.append(parse_settings(settings or []))
        layers.append({k: v for k, v in flags.items() if v is not None})
        return build_config(preset, *layers)
    except AedetectError as exc:
        raise UsageError(str(exc)) from None
    except PydanticError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "setting"
        raise UsageError(f"{where}: {first['msg']}") from None
    except ValueError as exc:  # the estimator's constraints
        raise UsageError(str(exc)) from None


def need_tensorflow_to_score(folder) -> None:
    """Load TensorFlow (or stop with the one-line error) when scoring the verified `folder`
    needs it: a label-aware head that reads Keras' code layer (a folder before hybrid format 3).
    Every other folder scores with NumPy alone."""
    from aedetect.serving.runtime import needs_tensorflow

    if needs_tensorflow(folder):
        need_tensorflow()


def scoring_model(folder):
    """A verified model folder ready to score (`aedetect.serving.runtime.open_scorer`): NumPy
    only, a label-aware head over it (`need_tensorflow_to_score` first)."""
    from aedetect.serving.runtime import open_scorer

    need_tensorflow_to_score(folder)
    return open_scorer(folder)


def load_model(model_dir):
    """Verify the folder first (fast, no TensorFlow), then load it (with its supervised head,
    if it has one: aedetect.model.hybrid); the manifest is read once."""
    from aedetect.model.hybrid import open_model
    from aedetect.store.folder import open_folder

    folder = open_folder(model_dir)
    need_tensorflow()
    return open_model(folder)


def parse_units(text: str | None) -> list[int] | str | None:
    if text is None or text.strip() == "auto":
        return None if text is None else "auto"
    try:
        return [int(u) for u in text.split(",") if u.strip()]
    except ValueError:
        raise UsageError(f"--hidden-units must be comma-separated integers like 20,8,20; "
                         f"got {text!r}") from None


SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="a setting as key=value, repeatable, e.g. --set learning_rate=3e-3 --set "
    "alerts_per_day=20. Settings and defaults: " + SETTINGS_PLACEHOLDER)]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="a JSON (or YAML) file of settings, e.g. a run's saved config; --set and "
    "the flags override it")]


JsonOpt = Annotated[bool, typer.Option("--json", help="print the results as JSON on stdout "
                                      "instead of the table")]


def print_metrics(metrics: dict, path: Path | None, as_json: bool = False, schema=None,
                  title: str | None = None) -> None:
    from aedetect.cli.ui import metrics_table
    from aedetect.data.creditcard import CREDITCARD

    if as_json:
        import json

        print(json.dumps(metrics, indent=2))
    else:
        guide = schema is None or schema.features == list(CREDITCARD.features)
        out.print(metrics_table(metrics, title, guide_column=guide))
    if path is not None:
        from aedetect.cli.ui import write_json

        write_json(metrics, path)
        console.print(f"metrics written to {escape(str(path))}")


def make_settings(cls, **kwargs):
    try:
        return cls(**kwargs)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UsageError(f"option {first['loc'][0]!r}: {first['msg']}") from None
