"""The `aedetect` command: a thin Typer layer over the library functions."""

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

app = typer.Typer(help="Anomaly detection in tabular data with autoencoders.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Fetch, generate and convert data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
schema_app = typer.Typer(help="Infer the schema of a table.", no_args_is_help=True)
app.add_typer(schema_app, name="schema")
spark_app = typer.Typer(help="Score on Apache Spark (needs the spark extra).", no_args_is_help=True)
app.add_typer(spark_app, name="spark")
console = Console(stderr=True, soft_wrap=True)  # messages are not cut at 80 columns
# Tables on stdout: full width when piped or redirected (Rich would cut them to 80 columns).
out = Console(width=None if sys.stdout.isatty() else 200)


class UsageError(AedetectError):
    """A wrong option or combination of options: exit status 2, like Click's own usage errors."""


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

DataOpt = Annotated[str, typer.Option(
    "--data", help="a table (.csv, .csv.gz, .csv.zst, .parquet), 'creditcard' to fetch the real "
    "ULB file, or (train) a folder of Parquet/CSV shards of normal rows, streamed")]
LabelOpt = Annotated[str | None, typer.Option(
    help="the 0/1 label column \\[default: inferred: a 0/1 column named like class, label, "
    "is_fraud, y]")]
TimeOpt = Annotated[str | None, typer.Option(
    help="the time column, seconds or datetimes \\[default: inferred]")]
IdsOpt = Annotated[str, typer.Option(help="comma-separated id columns (kept, never read by the "
                                     "model)")]
ExcludeOpt = Annotated[str, typer.Option(help="comma-separated columns to ignore")]
CategoricalOpt = Annotated[str, typer.Option(help="comma-separated columns to treat as categories")]
SchemaOpt = Annotated[Path | None, typer.Option(
    "--schema", help="schema file (.yaml/.json, see `aedetect schema infer`) instead of inference")]
SeedOpt = Annotated[int, typer.Option(help="seed for the split, the weights and the shuffling")]
ProtocolOpt = Annotated[str, typer.Option(help="split protocol: 'guide' or 'time'")]


def _settings_help() -> str:
    from aedetect.training.config import settings_help

    return settings_help().replace("[", "\\[")


def _rules_help() -> str:
    from aedetect.model.thresholds import RULES

    return ("threshold rule: " + "; ".join(f"{r.name}: {r.description}" for r in RULES.values())
            + " \\[default: normal_percentile]")


def _tensorflow():
    """Load TensorFlow (quietly) before any module that needs it; --help and errors stay fast."""
    from aedetect._imports import import_tensorflow_quietly

    try:
        import_tensorflow_quietly()
    except ModuleNotFoundError as exc:  # a scoring-only install: `score` and `serve` still work
        raise AedetectError(f"this command needs TensorFlow ({exc}); install it with "
                            "pip install 'aedetect[train]'") from None


def _load(data: str, cache_dir: Path | None = None):
    from aedetect.cli.ui import fetch_with_progress
    from aedetect.data.io import read_table

    path = fetch_with_progress(cache_dir) if data == "creditcard" else Path(data)
    with console.status(f"reading {escape(str(path))}"):
        return read_table(path), path


def _names(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def _read(data: str, cache_dir: Path | None = None):
    from aedetect.cli.ui import fetch_with_progress
    from aedetect.data.io import read_raw

    path = fetch_with_progress(cache_dir) if data == "creditcard" else Path(data)
    with console.status(f"reading {escape(str(path))}"):
        return read_raw(path), path


def _load_table(data: str, schema_file=None, label_column=None, time_column=None, id_columns="",
                exclude_columns="", categorical_columns="", schema=None):
    """Read a table, resolve its schema (`schema` as given, a file, or inferred, then the
    overrides), check it."""
    from aedetect.data.infer import resolve_schema
    from aedetect.data.schema import check_table

    df, path = _read(data)
    if schema is None:
        schema = resolve_schema(df, schema_file=str(schema_file) if schema_file else None,
                                label_column=label_column, time_column=time_column,
                                id_columns=_names(id_columns), exclude_columns=_names(exclude_columns),
                                categorical_columns=_names(categorical_columns))
    df, unknown = check_table(df, schema, source=str(path))
    if unknown:
        console.print(f"[yellow]warning: {escape(str(path))}: column(s) {escape(str(unknown))} are "
                      "not in the schema; ignored[/yellow]")
    return df, path, schema


@schema_app.command("infer")
def schema_infer(
    data: Annotated[str, typer.Option("--data", help="a table (.csv, .csv.gz, .csv.zst, .parquet)")],
    out_file: Annotated[Path | None, typer.Option("--out", help="write the schema (.yaml/.json) "
                                                  "to edit and pass to train --schema")] = None,
    label_column: LabelOpt = None,
    time_column: TimeOpt = None,
    id_columns: IdsOpt = "",
    exclude_columns: ExcludeOpt = "",
    categorical_columns: CategoricalOpt = "",
):
    """Infer each column's role and type; print the table and write it to edit."""
    from aedetect.cli.ui import schema_table

    _, path, schema = _load_table(data, None, label_column, time_column, id_columns,
                                  exclude_columns, categorical_columns)
    out.print(schema_table(schema, title=f"schema of {path}"))
    if out_file is not None:
        schema.to_file(out_file)
        console.print(f"schema written to {out_file}")


@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="data set name; only 'creditcard'")] = "creditcard",
    cache_dir: Annotated[Path | None, typer.Option(help="default: $AEDETECT_CACHE or "
                                                   "~/.cache/aedetect")] = None,
):
    """Download the ULB credit-card file (verified by sha256) and print its path."""
    from aedetect.cli.ui import fetch_with_progress

    if name != "creditcard":
        raise UsageError(f"unknown data set {name!r}; available: 'creditcard'")
    print(fetch_with_progress(cache_dir))


@data_app.command("generate")
def data_generate(
    out_file: Annotated[Path, typer.Option("--out", help="output .csv or .parquet")],
    rows: Annotated[int, typer.Option(help="number of rows")] = 50_000,
    fraud_rate: Annotated[float, typer.Option(help="share of anomalies")] = 0.01,
    seed: SeedOpt = 0,
    kind: Annotated[str, typer.Option(
        help="'creditcard': the ULB columns (Time, V1..V28, Amount, Class); 'transactions': ids, "
        "timestamps, categories, missing values, is_fraud and fraud_kind")] = "creditcard",
):
    """Write generated data with a known share of anomalies (.csv, .csv.gz, .csv.zst, .parquet)."""
    from aedetect.data.creditcard import LABEL
    from aedetect.data.generate import generate_transaction_log, generate_transactions
    from aedetect.data.io import write_table

    kinds = {"creditcard": (generate_transactions, LABEL),
             "transactions": (generate_transaction_log, "is_fraud")}
    if kind not in kinds:
        raise UsageError(f"--kind must be one of {sorted(kinds)}; got {kind!r}")
    make, label = kinds[kind]
    try:
        df = make(rows, fraud_rate, seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    write_table(df, out_file)
    console.print(f"wrote {len(df):,} rows ({int(df[label].sum()):,} anomalies) to {escape(str(out_file))}")


@data_app.command("to-tfrecord")
def data_to_tfrecord(
    out_dir: Annotated[Path, typer.Option("--out", help="folder for the shards")],
    data: DataOpt = "creditcard",
    protocol: ProtocolOpt = "guide",
    seed: SeedOpt = 0,
):
    """Split the data and write each part (train, validation, selection, test) as TFRecord shards."""
    from aedetect.data.creditcard import CREDITCARD
    from aedetect.training.workflow import split_frame, write_split_tfrecords

    df, _ = _load(data)
    _tensorflow()
    split = split_frame(df, _config(protocol=protocol, seed=seed), CREDITCARD)
    with console.status("writing TFRecord shards"):
        write_split_tfrecords(df, split, out_dir, CREDITCARD)
    console.print(f"wrote {split.sizes()} rows as shards to {escape(str(out_dir))}")


def _config(preset: str = "default", config_file: Path | None = None, settings: list[str] | None = None,
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


def _load_model(model_dir):
    """Verify the folder first (fast, no TensorFlow), then load it (with its supervised head,
    if it has one: aedetect.model.hybrid); the manifest is read once."""
    from aedetect.model.hybrid import open_model
    from aedetect.store.folder import open_folder

    folder = open_folder(model_dir)
    _tensorflow()
    return open_model(folder)


def _units(text: str | None) -> list[int] | str | None:
    if text is None or text.strip() == "auto":
        return None if text is None else "auto"
    try:
        return [int(u) for u in text.split(",") if u.strip()]
    except ValueError:
        raise UsageError(f"--hidden-units must be comma-separated integers like 20,8,20; "
                         f"got {text!r}") from None


def _train(data, config, model_dir: Path | None, overwrite: bool, warm_start: Path | None = None,
           schema_opts: dict | None = None):
    from aedetect.cli.ui import schema_table
    from aedetect.serving.batch import sigterm_raises
    from aedetect.training.run import Parent, check_before_training

    check_before_training(model_dir, overwrite, warm_start)  # a bad folder fails before the data loads
    try:
        with sigterm_raises():  # `kill` cleans up like Ctrl-C: no shards, no half a folder
            parent = None
            if warm_start is not None:  # the parent's columns and types, not a new inference
                parent = Parent(warm_start, _load_model(warm_start))
                df, path, schema = _load_table(data, schema=parent.schema)
            else:
                df, path, schema = _load_table(data, **(schema_opts or {}))
            console.print(schema_table(schema, title=f"schema of {escape(str(path))}"))
            if schema.label is None:
                console.print(f"[yellow]no label column: training on all {len(df):,} rows (10% held "
                              "out for validation); no test set, so nothing is evaluated. Pass "
                              "--label-column to name one.[/yellow]")
            _tensorflow()
            from aedetect.cli.progress import TrainingProgress
            from aedetect.training.run import train_from_table

            with TrainingProgress(config.param("epochs"), console) as progress:
                run = train_from_table(df, config, schema, data_file=path, out=model_dir,
                                       overwrite=overwrite, warm_start=parent, callbacks=[progress])
            _print_comparison(run.comparison)
    except KeyboardInterrupt:
        where = f" ({escape(str(model_dir))} is unchanged)" if model_dir is not None else ""
        console.print(f"[yellow]interrupted; no model was written{where}[/yellow]")
        sys.exit(130)
    det = run.detector
    ae = getattr(det, "detector", det)  # the autoencoder, also under a hybrid
    console.print(f"trained {ae.n_epochs_} epochs (best {ae.best_epoch_}) on "
                  f"{ae.n_train_:,} normal rows; threshold {det.threshold_:.4g} "
                  f"({det.threshold.rule}, {det.threshold.source})")
    if config.use_labels:
        from aedetect.model.hybrid import describe_head

        console.print(describe_head(det))
    est = det.threshold.estimate
    if est:
        from aedetect.evaluation.report import interval

        console.print(f"expected on the {est['rows']}: precision {interval(est['precision'])}, "
                      f"recall {interval(est['recall'])} (95% exact binomial intervals)")
    for w in det.threshold.warnings:
        console.print(f"[yellow]warning: {escape(str(w))}[/yellow]")
    return df, run


SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="a setting as key=value, repeatable, e.g. --set learning_rate=3e-3 --set "
    "alerts_per_day=20. Settings and defaults: " + _settings_help())]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="a JSON (or YAML) file of settings, e.g. a run's saved config; --set and "
    "the flags override it")]


def _print_comparison(comparison: dict | None) -> None:
    """A warm start's parent and new model side by side, when there were labelled rows to compare on."""
    if comparison and "models" in comparison:
        from aedetect.monitoring.batch import comparison_table

        out.print(comparison_table(comparison["models"],
                                   f"before and after the warm start, on {comparison['compared_on']}"))


@app.command()
def train(
    model_dir: Annotated[Path, typer.Option("--out", help="model folder to write")],
    data: DataOpt = "creditcard",
    protocol: Annotated[str | None, typer.Option(help="split protocol: 'guide' or 'time' "
                                                 "\\[default: guide]")] = None,
    seed: Annotated[int | None, typer.Option(
        help="seed for the split, the weights and the shuffling \\[default: 0]")] = None,
    preset: Annotated[str, typer.Option(
        help="starting configuration: 'default' or 'guide' (20-8-20 tanh, MSE, 5 epochs, batch 256)")
    ] = "default",
    hidden_units: Annotated[str | None, typer.Option(
        help="hidden layer sizes, e.g. 64,32,16,32,64; 'auto': sized to the data "
        "(docs/experiments.md) \\[default: auto]")] = None,
    epochs: Annotated[int | None, typer.Option(
        help="at most; 'auto' (--set epochs=auto) from the row count \\[default: auto]")] = None,
    threshold_rule: Annotated[str | None, typer.Option(help=_rules_help())] = None,
    input_pipeline: Annotated[str | None, typer.Option(
        help="'memory' or 'tfrecord' \\[default: memory]")] = None,
    use_labels: Annotated[bool | None, typer.Option(
        "--use-labels", help="also train a supervised head on the labelled rows before the selection "
        "set (raw features + the autoencoder's residual features), calibrated into a fraud "
        "probability on the selection set; under --set min_anomalies=20 labelled anomalies the "
        "autoencoder scores alone (docs/hybrid.md)")] = None,
    settings: SetOpt = None,
    config_file: ConfigOpt = None,
    label_column: LabelOpt = None,
    time_column: TimeOpt = None,
    id_columns: IdsOpt = "",
    exclude_columns: ExcludeOpt = "",
    categorical_columns: CategoricalOpt = "",
    schema_file: SchemaOpt = None,
    warm_start: Annotated[Path | None, typer.Option(
        help="model folder to continue training from, on newer normals: its preprocessing and "
        "network are kept (network settings are ignored), the score statistics and threshold are "
        "refitted; both models are then compared on the test rows")] = None,
    overwrite: bool = False,
):
    """Train on the training normals of a split and write the model folder.

    The table's schema is inferred (and printed) or read from --schema; without a label column
    every row trains."""
    config = _config(preset, config_file, settings, protocol=protocol, seed=seed,
                     hidden_units=_units(hidden_units), epochs=epochs,
                     threshold_rule=threshold_rule, input_pipeline=input_pipeline,
                     use_labels=use_labels)
    schema_opts = dict(schema_file=schema_file, label_column=label_column, time_column=time_column,
                       id_columns=id_columns, exclude_columns=exclude_columns,
                       categorical_columns=categorical_columns)
    if Path(data).is_dir():
        if warm_start is not None or use_labels:
            raise UsageError("--warm-start and --use-labels read one table; they do not take a folder of shards")
        if any(v for v in schema_opts.values()):
            raise UsageError("a folder of shards is read with the credit-card columns; the schema "
                             "options (--schema, --label-column, ...) take one table")
        _train_shards(Path(data), config, model_dir, overwrite)
    else:
        _train(data, config, model_dir, overwrite, warm_start, schema_opts)
    console.print(f"model written to {escape(str(model_dir))}")


def _train_shards(folder: Path, config, model_dir: Path, overwrite: bool) -> None:
    """Train on a folder of Parquet/CSV shards of normal rows, streamed (see data/shards.py)."""
    from aedetect.data.creditcard import CREDITCARD  # a shard folder holds the credit-card columns
    from aedetect.training.run import check_before_training, check_shard_rule, train_from_shards

    try:
        check_shard_rule(config)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    check_before_training(model_dir, overwrite)
    _tensorflow()
    from aedetect.cli.progress import TrainingProgress

    with TrainingProgress(config.param("epochs"), console) as progress:
        run = train_from_shards(folder, config, CREDITCARD, out=model_dir, overwrite=overwrite,
                                callbacks=[progress])
    det = run.detector
    console.print(f"trained {det.n_epochs_} epochs (best {det.best_epoch_}) on {det.n_train_:,} "
                  f"normal rows streamed from {run.metadata['shards']} shard(s), validated on "
                  f"{det.n_validation_:,}; threshold {det.threshold_:.4g} ({det.threshold.rule})")


JsonOpt = Annotated[bool, typer.Option("--json", help="print the results as JSON on stdout "
                                      "instead of the table")]


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Option("--model", help="model folder")],
    data: DataOpt = "creditcard",
    rows: Annotated[str, typer.Option(
        help="'test': the test split the model was trained with (same data file); 'all'")] = "test",
    metrics_out: Annotated[Path | None, typer.Option("--out", help="write metrics.json")] = None,
    report_dir: Annotated[Path | None, typer.Option(
        "--report", help="folder for report.html (self-contained), its PNGs and metrics.json")] = None,
    alerts_per_day: Annotated[float, typer.Option(help="daily alert budget for the report")] = 50.0,
    as_json: JsonOpt = False,
):
    """Evaluate a model on labelled data: metrics table and metrics.json."""
    from aedetect.files import check_output_path
    from aedetect.store.folder import open_folder

    if rows not in ("test", "all"):
        raise UsageError(f"--rows must be 'test' or 'all'; got {rows!r}")
    folder = open_folder(model_dir)  # a bad model folder fails fast, before data and TensorFlow load
    if metrics_out is not None:
        check_output_path(metrics_out, what="metrics file")
    if report_dir is not None:
        check_output_path(report_dir / "report.html", what="report")
    df, path = _read(data)
    det = _load_model(folder)
    from aedetect.evaluation.metrics import evaluate_model
    from aedetect.training.workflow import model_schema

    ev = evaluate_model(det, df, rows, alerts_per_day=alerts_per_day, source=str(path))
    _report(ev.metrics, metrics_out, as_json, model_schema(det))
    if report_dir is not None:
        from aedetect.evaluation.report import evaluation_report

        with console.status("drawing the report"):
            rep = evaluation_report(det, ev.y, ev.scores, ev.errors, ev.metrics,
                                    f"aedetect evaluation: {model_dir}")
            path = rep.write(report_dir, ev.metrics)
        console.print(f"report written to {escape(str(path))}")


@app.command()
def compare(
    data: DataOpt = "creditcard",
    protocol: ProtocolOpt = "guide",
    seed: SeedOpt = 0,
    seeds: Annotated[int, typer.Option(help="repeat split and training for this many seeds")] = 1,
    epochs: Annotated[int | None, typer.Option(help="at most \\[default: 100]")] = None,
    alerts_per_day: Annotated[float, typer.Option(help="daily alert budget")] = 50.0,
    lof_max_train: Annotated[int, typer.Option(help="LocalOutlierFactor trains on at most this "
                                               "many normals")] = 20_000,
    report_dir: Annotated[Path | None, typer.Option(
        "--report", help="folder for report.html, compare.md and metrics.json")] = None,
    as_json: JsonOpt = False,
):
    """The autoencoder beside IsolationForest, PCA, LocalOutlierFactor and a supervised ceiling."""
    from rich.table import Table

    from aedetect.data.creditcard import CREDITCARD
    from aedetect.training.compare import METRICS, compare_methods, comparison_report, markdown_table, table_rows

    config = _config(protocol=protocol, seed=seed, epochs=epochs)
    df, _ = _load(data)
    _tensorflow()
    with console.status("comparing") as status:
        cmp = compare_methods(df, config, seeds, schema=CREDITCARD, alerts_per_day=alerts_per_day,
                              lof_max_train=lof_max_train, progress=status.update)
    if as_json:
        import json

        print(json.dumps(cmp.to_dict(), indent=2))
    else:
        table = Table(title=f"test set, {protocol} protocol, seeds {cmp.seeds}")
        for h in ["method", *METRICS.values(), "how it was run"]:
            table.add_column(h, justify="left" if h in ("method", "how it was run") else "right")
        for row in table_rows(cmp):
            table.add_row(*row)
        out.print(table)
    if report_dir is not None:
        rep = comparison_report(cmp)
        path = rep.write(report_dir, cmp.to_dict(), extra={"compare.md": markdown_table(cmp)})
        console.print(f"report written to {escape(str(path))}")


def _report(metrics: dict, path: Path | None, as_json: bool = False, schema=None) -> None:
    from aedetect.cli.ui import metrics_table
    from aedetect.data.creditcard import CREDITCARD

    if as_json:
        import json

        print(json.dumps(metrics, indent=2))
    else:
        guide = schema is None or schema.features == list(CREDITCARD.features)
        out.print(metrics_table(metrics, guide_column=guide))
    if path is not None:
        from aedetect.cli.ui import write_json

        write_json(metrics, path)
        console.print(f"metrics written to {escape(str(path))}")


@app.command()
def score(
    model_dir: Annotated[Path, typer.Option("--model", help="model folder")],
    data: Annotated[Path, typer.Option("--data", help="CSV/Parquet file to score")],
    out_file: Annotated[Path, typer.Option("--out", help="output .csv or .parquet")],
    id_columns: Annotated[str, typer.Option(
        help="comma-separated input columns to copy to the output (e.g. an id)")] = "",
    all_columns: Annotated[bool, typer.Option(help="copy every input column to the output")] = False,
    top_k: Annotated[int, typer.Option(help="top contributing features per row")] = 3,
    chunk_rows: Annotated[int, typer.Option(help="rows per chunk; bounds memory")] = 50_000,
    on_bad_rows: Annotated[str, typer.Option(
        help="'error': stop at the first bad row; 'skip': write bad rows to OUT.bad-rows.csv")] = "error",
):
    """Score a file of any size in chunks: row, ids, score, flag and top features per row."""
    from aedetect.cli.ui import ScoringProgress
    from aedetect.files import check_output_path, refuse_overwriting_input
    from aedetect.serving.batch import bad_rows_path, score_file

    if on_bad_rows not in ("error", "skip"):
        raise UsageError(f"--on-bad-rows must be 'error' or 'skip'; got {on_bad_rows!r}")
    if chunk_rows < 1 or top_k < 0:
        raise UsageError(f"--chunk-rows must be >= 1 and --top-k >= 0; got {chunk_rows}, {top_k}")
    for target in (out_file, bad_rows_path(out_file)):  # fast, before the model loads
        refuse_overwriting_input(data, target)
    check_output_path(out_file)
    from aedetect.serving.runtime import open_scorer
    from aedetect.store.folder import open_folder

    folder = open_folder(model_dir)
    if folder.is_hybrid:  # a supervised head needs its estimator
        _tensorflow()
    det = open_scorer(folder)  # else NumPy only: scoring never imports TensorFlow
    ids = [c.strip() for c in id_columns.split(",") if c.strip()]
    try:
        with ScoringProgress(console) as progress:
            s = score_file(det, data, out_file, id_columns=ids, all_columns=all_columns, top_k=top_k,
                           chunk_rows=chunk_rows, on_bad_rows=on_bad_rows, progress=progress)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted; no output was written ({escape(str(out_file))} is "
                      "unchanged)[/yellow]")
        sys.exit(130)
    if s.ignored_columns:
        console.print(f"[yellow]warning: column(s) {s.ignored_columns} are not in the model's "
                      "schema; ignored[/yellow]")
    for p in s.stale_removed:
        console.print(f"removed {escape(str(p))}, a temporary file left by an earlier run that was killed")
    console.print(f"scored {s.rows_scored:,} of {s.rows_read:,} rows in {s.seconds:.1f} s "
                  f"({s.rows_per_second:,.0f} rows/s), flagged {s.rows_flagged:,} "
                  f"(threshold {s.threshold:.4g}); wrote {escape(str(s.output))}")
    if s.bad_rows_file is not None:
        console.print(f"skipped {s.rows_skipped:,} bad row(s); rows and reasons in "
                      f"{escape(str(s.bad_rows_file))}")


@app.command()
def serve(
    model_dir: Annotated[Path, typer.Option("--model", help="model folder")],
    host: str = "127.0.0.1",
    port: int = 8000,
    max_batch: Annotated[int, typer.Option(help="most transactions per request")] = 1000,
    max_body_bytes: Annotated[int, typer.Option(help="largest request body accepted")] = 1_048_576,
    api_key_env: Annotated[str, typer.Option(
        help="environment variable holding the API key; auth is on when it is set")] = "AEDETECT_API_KEY",
    top_k: Annotated[int, typer.Option(help="top contributing features per transaction")] = 3,
    drift_window: Annotated[int, typer.Option(
        help="latest scored rows compared with the reference for GET /v1/drift and the drift gauges")] = 10_000,
    public_docs: Annotated[bool, typer.Option(
        help="serve /docs, /redoc and /openapi.json without the API key")] = False,
    max_concurrent: Annotated[int, typer.Option(help="scoring requests computed at once")] = 2,
    max_queue: Annotated[int, typer.Option(help="scoring requests waiting; more get a 503")] = 16,
    queue_timeout: Annotated[float, typer.Option(
        help="seconds a request may wait for a slot before a 503 with Retry-After")] = 0.25,
):
    """Serve the model over HTTP: POST /v1/score, /v2 (KServe), GET /healthz, /v1/model, /v1/drift, /metrics."""
    import socket

    import uvicorn

    from aedetect.serving.app import ServiceSettings, create_app

    settings = _settings(ServiceSettings, max_batch=max_batch, max_body_bytes=max_body_bytes,
                         api_key_env=api_key_env, top_k=top_k, public_docs=public_docs,
                         max_concurrent=max_concurrent, max_queue=max_queue,
                         queue_timeout_s=queue_timeout, drift_window=drift_window)
    from aedetect.store.folder import open_folder

    folder = open_folder(model_dir)
    try:  # bind before loading the model and before saying "serving"
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except (OSError, OverflowError) as exc:
        raise AedetectError(f"cannot listen on {host}:{port}: {getattr(exc, 'strerror', None) or exc}") from None
    api = create_app(folder, settings)  # loads no TensorFlow for a plain folder
    auth = "on" if api.state.api_key else f"off (set {api_key_env} to turn it on)"
    # A second, coarser gate before the app: connections beyond the app's slots and queue (and
    # a few for /healthz and /metrics) get uvicorn's plain 503 before their request is parsed,
    # so a CPU-starved event loop does not pile up work it will answer too late.
    server = uvicorn.Server(uvicorn.Config(
        api, log_level="warning", limit_concurrency=max_concurrent + max_queue + 8))
    console.print(f"serving {escape(str(model_dir))} on http://{host}:{sock.getsockname()[1]} "
                  f"(API-key auth {auth})")
    server.run(sockets=[sock])


@spark_app.command("score")
def spark_score(
    model_dir: Annotated[Path, typer.Option("--model", help="model folder")],
    data: Annotated[str, typer.Option("--data", help="Parquet file or folder (any path Spark reads)")],
    out_dir: Annotated[str, typer.Option("--out", help="Parquet folder to write")],
    master: Annotated[str | None, typer.Option(help="classic Spark master, e.g. local[2] or "
                                               "yarn \\[default: local[*]]")] = None,
    remote: Annotated[str | None, typer.Option(help="Spark Connect URL, e.g. sc://host:15002")] = None,
    id_columns: Annotated[str, typer.Option(help="comma-separated columns to copy to the output")] = "",
    top_k: Annotated[int, typer.Option(help="top contributing features per row")] = 3,
    overwrite: bool = False,
):
    """Score Parquet on Spark and write Parquet: ids, score, flag, top features, reason."""
    from aedetect.serving.spark import score_parquet, session
    from aedetect.store.folder import read_manifest

    if top_k < 0:
        raise UsageError(f"--top-k must be >= 0; got {top_k}")
    if master and remote:
        raise UsageError("give --master or --remote, not both")
    read_manifest(model_dir)  # a bad folder fails before a Spark session starts
    if "://" not in out_dir and Path(out_dir).exists() and not overwrite:
        raise AedetectError(f"{out_dir} already exists; pass --overwrite to replace it")
    ids = [c.strip() for c in id_columns.split(",") if c.strip()]
    with console.status("starting Spark"):
        spark = session(master, remote)
    with console.status(f"scoring {data} on Spark"):
        s = score_parquet(spark, model_dir, data, out_dir, id_columns=ids, top_k=top_k,
                          overwrite=overwrite)
    console.print(f"scored {s['rows'] - s['unscored']:,} of {s['rows']:,} rows, flagged "
                  f"{s['flagged']:,}; {s['unscored']:,} row(s) could not be scored (see the "
                  f"reason column); wrote {out_dir}")


def _settings(cls, **kwargs):
    try:
        return cls(**kwargs)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UsageError(f"option {first['loc'][0]!r}: {first['msg']}") from None


@app.command()
def monitor(
    model_dir: Annotated[Path, typer.Option("--model", help="model folder")],
    data: Annotated[Path, typer.Option("--data", help="CSV/Parquet file of new rows")],
    window: Annotated[str | None, typer.Option(
        help="cut the rows into windows of this length of --time-column, e.g. 4h, 1d, 30m; "
        "default: one batch")] = None,
    time_column: Annotated[str | None, typer.Option(
        help="seconds (like the ULB Time) or dates \\[default: the model's time column]")] = None,
    label_column: Annotated[str | None, typer.Option(
        help="0/1 labels, used for precision and recall when the file has them \\[default: the "
        "model's label column]")] = None,
    reference: Annotated[Path | None, typer.Option(
        help="CSV/Parquet to take the reference from (normal rows, labels when present), for a "
        "model folder without reference.json")] = None,
    report_dir: Annotated[Path | None, typer.Option(
        "--report", help="folder for report.html, its PNGs, drift.json and drift.md")] = None,
    json_out: Annotated[Path | None, typer.Option("--out", help="write drift.json here")] = None,
    as_json: JsonOpt = False,
    alpha: Annotated[float, typer.Option(help="test level after the Benjamini-Hochberg correction")] = 0.01,
    psi_alarm: Annotated[float, typer.Option(help="PSI a column or the score must reach to alarm")] = 0.2,
    share_ratio: Annotated[float, typer.Option(
        help="flagged (or anomaly) share must be off its promised interval by this factor to alarm")] = 1.5,
):
    """Compare new rows (per time window) with the model's reference: column and score drift,
    flagged share against the promise, precision and recall. Exit code 3 when an alarm fires."""
    from aedetect.data.io import read_raw
    from aedetect.monitoring.batch import monitor_frame, parse_window, rich_table, write_outputs
    from aedetect.monitoring.reference import DriftSettings, load_reference

    settings = _settings(DriftSettings, alpha=alpha, psi_alarm=psi_alarm, share_ratio=share_ratio)
    try:
        seconds = parse_window(window) if window else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    ref = load_reference(model_dir)
    if ref is None and reference is None:
        raise UsageError(f"{model_dir} has no reference.json (trained before drift monitoring); "
                            "pass --reference DATA to take one from a file of rows like the training data")
    df = read_raw(data)
    ref_df = read_raw(reference) if reference is not None else None
    det = _load_model(model_dir)
    from aedetect.training.workflow import model_schema

    schema = model_schema(det)
    time_column = time_column or schema.time
    label_column = label_column or schema.label
    if ref_df is not None:
        from aedetect.monitoring.reference import reference_from_frame

        ref = reference_from_frame(det, ref_df, label_column, source=str(reference),
                                   time_column=time_column if time_column in ref_df.columns else None)
    with console.status("scoring and comparing"):
        run = monitor_frame(det, ref, df, window=seconds, time_column=time_column,
                            label_column=label_column, settings=settings, source=str(data))
    if as_json:
        import json

        print(json.dumps(run.summary, indent=2))
    else:
        out.print(rich_table(run.summary))
        for line in run.summary["hint"]:
            console.print(f"[yellow]{line}[/yellow]", highlight=False)
    if json_out is not None:
        from aedetect.cli.ui import write_json

        write_json(run.summary, json_out)
    if report_dir is not None:
        with console.status("drawing the report"):
            path = write_outputs(run, ref, report_dir, f"aedetect drift: {data}")
        console.print(f"report written to {path}")
    if run.alarm:
        n = sum(w["alarm"] for w in run.summary["windows"])
        console.print(f"[bold red]alarm[/bold red] in {n} of {len(run.summary['windows'])} window(s); "
                      f"to retrain from this model: aedetect train --warm-start {model_dir} --data NEWER.csv")
        raise typer.Exit(3)


@app.command()
def export(
    model_dir: Annotated[Path, typer.Option("--model", help="model folder")],
    out_dir: Annotated[Path, typer.Option("--out", help="SavedModel folder, or .onnx file, to write")],
    fmt: Annotated[str, typer.Option("--format", help="'savedmodel' (TF Serving) or 'onnx'")] = "savedmodel",
    overwrite: bool = False,
):
    """Export a SavedModel or an ONNX model that takes raw columns and returns score and flag."""
    if fmt not in ("savedmodel", "onnx"):
        raise UsageError(f"--format must be 'savedmodel' or 'onnx'; got {fmt!r}")
    from aedetect.store.folder import open_folder

    folder = open_folder(model_dir)
    if folder.is_hybrid:
        raise AedetectError(f"{model_dir} holds a supervised head (--use-labels), which the exports do "
                            "not carry; export a model trained without --use-labels")
    if out_dir.exists() and not overwrite:
        raise AedetectError(f"{out_dir} already exists; pass --overwrite to replace it")
    if fmt == "onnx":
        from aedetect.serving.export import export_onnx
        from aedetect.serving.runtime import load_scorer

        try:
            import onnx  # noqa: F401
        except ModuleNotFoundError:
            raise AedetectError("--format onnx needs the onnx package: pip install 'aedetect[onnx]'") from None
        det = load_scorer(folder)  # the ONNX graph is built from the NumPy weights: no TensorFlow
        export_onnx(det, out_dir, overwrite=overwrite)
        what = "ONNX model"
    else:
        det = _load_model(folder)
        from aedetect.serving.export import export_savedmodel

        with console.status("writing SavedModel"):
            export_savedmodel(det, out_dir, overwrite=overwrite)
        what = "SavedModel (signature 'serving_default')"
    console.print(f"{what} written to {escape(str(out_dir))}: one float64 [None] input per column "
                  f"{det.feature_names_in_[0]!r}...{det.feature_names_in_[-1]!r}; outputs 'score', 'flag'")


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="folder for metrics.json and the model")] = Path("runs/demo"),
    data: DataOpt = "creditcard",
    seed: SeedOpt = 0,
    epochs: Annotated[int | None, typer.Option(help="at most \\[default: 100]")] = None,
    offline_rows: Annotated[int, typer.Option(
        help="rows of generated data used when the real file cannot be fetched")] = 100_000,
):
    """Fetch the real data (generated data when offline), train, evaluate, print the table."""
    from aedetect.cli.ui import fetch_with_progress
    from aedetect.training.demo import demo_data

    demo = demo_data(data, out_dir, offline_rows=offline_rows, seed=seed,
                     fetch=lambda: fetch_with_progress(None))
    if demo.fallback is not None:
        console.print(f"[yellow]cannot fetch the real data ({demo.fallback}); using {offline_rows:,} "
                      "rows of generated data instead: the numbers below are NOT the ULB "
                      "results[/yellow]")
    config = _config(seed=seed, epochs=epochs)
    df, run = _train(demo.data, config, out_dir / "model", overwrite=True)
    from aedetect.training.demo import demo_metrics
    from aedetect.training.workflow import model_schema

    _report(demo_metrics(run, df), out_dir / "metrics.json", schema=model_schema(run.detector))


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
        where = f"{exc.filename}: " if exc.filename else ""
        console.print(f"[bold red]error:[/bold red] {escape(where + (exc.strerror or str(exc)))}",
                      highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":  # `python -m aedetect.cli` is the way; this path runs the same start-up
    from aedetect._entry import main as _start

    _start()
