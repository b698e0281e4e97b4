"""`aedetect train`, `evaluate`, `compare` and `demo`: each prints what a library call of
`aedetect.training` or `aedetect.evaluation` returns."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from aedetect.cli.common import (
    RULES_PLACEHOLDER,
    CategoricalOpt,
    ConfigOpt,
    CreditDataOpt,
    DataOpt,
    EntityOpt,
    ExcludeOpt,
    IdsOpt,
    JsonOpt,
    LabelOpt,
    LabelsDbOpt,
    LabelsIdOpt,
    OverwriteOpt,
    SchemaOpt,
    SeedOpt,
    SetOpt,
    TimeOpt,
    UsageError,
    console,
    input_path,
    load_credit_table,
    load_model,
    load_table,
    need_tensorflow,
    out,
    parse_units,
    print_metrics,
    read_data,
    train_config,
)


def _train(data, config, model_dir: Path | None, overwrite: bool, warm_start: Path | None = None,
           schema_opts: dict | None = None, test_data: Path | None = None, labels=None,
           labels_id_column: str | None = None, history_state: Path | None = None):
    from aedetect.cli.ui import schema_table
    from aedetect.files import sigterm_raises
    from aedetect.training.run import Parent, check_before_training

    parent_folder = check_before_training(model_dir, overwrite, warm_start)  # fails before the data loads
    try:
        with sigterm_raises():  # `kill` cleans up like Ctrl-C: no shards, no half a folder
            parent = None
            if warm_start is not None:  # the parent's columns and types, not a new inference
                parent = Parent(warm_start, load_model(parent_folder))
                df, path, schema = load_table(data, schema=parent.schema)
            else:
                df, path, schema = load_table(data, **(schema_opts or {}))
            joined = None
            if labels is not None:  # (frame, source) of --labels or --labels-db
                df, schema, joined = _join_labels(df, schema, path, *labels, labels_id_column)
            console.print(schema_table(schema, title=f"schema of {escape(str(path))}"))
            state = None
            if history_state is not None:  # the history before the data, checked before training
                if schema.history is None:
                    raise UsageError("--history-state needs entity history (--entity-columns)")
                from aedetect.data.history import read_state

                state = read_state(history_state, schema.history.entities)
            test_df = None
            if test_data is not None:  # read as the training data is, and checked before training
                from aedetect.training.run import check_test_data

                test_df, _, _ = load_table(str(test_data), schema=schema)
                check_test_data(test_df, schema, test_data)
            if schema.label is None:
                console.print(f"[yellow]no label column: training on all {len(df):,} rows (10% held "
                              "out for validation); no test set, so nothing is evaluated. Pass "
                              "--label-column to name one.[/yellow]")
            need_tensorflow()
            from aedetect.cli.progress import TrainingProgress
            from aedetect.training.run import train_from_table

            with TrainingProgress(config.param("epochs"), console) as progress:
                run = train_from_table(df, config, schema, data_file=path, out=model_dir,
                                       overwrite=overwrite, warm_start=parent, callbacks=[progress],
                                       test_data=test_df, test_file=test_data, labels=joined,
                                       history_state=state, history_source=str(history_state))
            _print_comparison(run.comparison)
    except KeyboardInterrupt:
        where = f" ({escape(str(model_dir))} is unchanged)" if model_dir is not None else ""
        console.print(f"[yellow]interrupted; no model was written{where}[/yellow]")
        sys.exit(130)
    det = run.detector
    ae = getattr(det, "detector", det)  # the autoencoder, also under a hybrid
    console.print(f"trained {ae.network_}, {ae.n_epochs_} epochs (best {ae.best_epoch_}) on "
                  f"{ae.n_train_:,} normal rows; threshold {det.threshold_:.4g} "
                  f"({det.threshold.rule}, {det.threshold.source})")
    warm = (getattr(ae, "split_", None) or {}).get("history_warmup_rows")
    if warm:
        days = ae.split_["history_warmup_s"] / 86_400
        head = "; the supervised head still learns from their labels" if config.use_labels else ""
        console.print(f"entity history: the rows of its first {days:.1f} days ({warm:,}) give the later rows their "
                      f"history and are not split (--set history_warmup_days=0 to train on them too){head}")
    if config.use_labels:
        from aedetect.model.hybrid import describe_head

        console.print(describe_head(det))
    est = det.threshold.estimate
    if est:
        from aedetect.evaluation.report import interval

        console.print(f"expected on the {est['rows']}: precision {interval(est['precision'])}, "
                      f"recall {interval(est['recall'])} (95% exact binomial intervals)")
    for w in [*run.warnings, *det.threshold.warnings]:
        console.print(f"[yellow]warning: {escape(str(w))}[/yellow]")
    if run.test is not None:
        m = run.test["metrics"]
        from aedetect.data.creditcard import CREDITCARD
        from aedetect.data.splits import describe_split

        if m["protocol"] == "time":  # no test window in the training file then (`test_share` 0)
            split = "every row (its earliest 90% train, its latest 10% choose)"
        elif det.dataset_schema.features == list(CREDITCARD.features):
            split = f"the {m['protocol']} split"
        else:
            split = f"the rows outside {describe_split(m['protocol'])}"
        print_metrics(m, None, schema=det.dataset_schema, title=(
            f"test file {run.test['file']} ({run.test['rows']:,} rows; trained and threshold chosen on "
            f"{split} of {path}, seed {m['seed']})"))
        if run.test["warning"]:
            console.print(f"[yellow]warning: {escape(run.test['warning'])}[/yellow]", highlight=False)
    return df, run


def _join_labels(df, schema, path, frame, source: str, id_column: str | None):
    """The verdicts joined to the table (`aedetect.data.labels.join_labels`), said in a line; a
    warning for labels that match no row."""
    from aedetect.data.labels import join_labels

    join = join_labels(df, schema, frame, id_column=id_column, source=source, data_source=str(path))
    s = join.summary
    line = (f"labels: {s['matched']:,} of {s['labels']:,} from {escape(source)} match {s['rows']:,} row(s) "
            f"by column {escape(repr(s['id_column']))}: {s['fraud_rows']:,} fraud, {s['legit_rows']:,} legit, "
            f"in label column {escape(repr(s['label_column']))}")
    if s["added_column"]:
        line += f"; the other {s['rows_without_verdict']:,} rows have no verdict and are labelled 0 (normal)"
    else:
        line += f"; {s['changed_rows']:,} verdict(s) changed the file's label"
    console.print(line, highlight=False)
    if join.unmatched:
        console.print(f"[yellow]warning: {join.unmatched:,} of the {s['labels']:,} labels match no row of "
                      f"{escape(str(path))} (column {escape(repr(s['id_column']))}), e.g. "
                      f"{escape(', '.join(map(repr, s['unmatched_ids'])))}; they are not used[/yellow]",
                      highlight=False)
    return join.data, join.schema, s


def _print_comparison(comparison: dict | None) -> None:
    """A warm start's parent and new model side by side, when there were labelled rows to compare on."""
    if comparison and "models" in comparison:
        from aedetect.cli.ui import comparison_table

        out.print(comparison_table(comparison["models"],
                                   f"before and after the warm start, on {comparison['compared_on']}"))


def train(
    model_dir: Annotated[Path, typer.Option("--out", help="model folder to write")],
    data: DataOpt = "creditcard",
    protocol: Annotated[str | None, typer.Option(help="split protocol: 'guide', 'time' or 'auto' "
                                                 "(time-ordered when the table has a time column, "
                                                 "else guide) [default: auto]")] = None,
    seed: Annotated[int | None, typer.Option(
        help="seed for the split, the weights and the shuffling [default: 0]")] = None,
    preset: Annotated[str, typer.Option(
        help="starting configuration: 'default' or 'guide' (20-8-20 tanh, MSE, 5 epochs, batch 256)")
    ] = "default",
    hidden_units: Annotated[str | None, typer.Option(
        help="hidden layer sizes, e.g. 64,32,16,32,64; 'auto': sized to the data "
        "(docs/experiments.md) [default: auto]")] = None,
    epochs: Annotated[int | None, typer.Option(
        help="at most; 'auto' (--set epochs=auto) from the row count [default: auto]")] = None,
    threshold_rule: Annotated[str | None, typer.Option(help=RULES_PLACEHOLDER)] = None,
    input_pipeline: Annotated[str | None, typer.Option(
        help="'memory' or 'tfrecord' [default: memory]")] = None,
    use_labels: Annotated[bool | None, typer.Option(
        "--use-labels", help="also train a supervised head on the labelled rows before the selection "
        "set and blend it with the autoencoder's score (the head's weight n / (n + 25) for n labelled "
        "anomalies, or the head alone, chosen out of fold), calibrated into a fraud probability on "
        "the selection set; under --set "
        "min_anomalies=3 labelled anomalies the autoencoder scores alone (docs/hybrid.md); --labels / "
        "--labels-db give it the verdicts of reviewed alerts")] = None,
    settings: SetOpt = None,
    config_file: ConfigOpt = None,
    label_column: LabelOpt = None,
    time_column: TimeOpt = None,
    id_columns: IdsOpt = "",
    exclude_columns: ExcludeOpt = "",
    categorical_columns: CategoricalOpt = "",
    entity_columns: EntityOpt = "",
    schema_file: SchemaOpt = None,
    warm_start: Annotated[Path | None, typer.Option(
        help="model folder to continue training from, on newer normals: its preprocessing and "
        "network are kept (network settings are ignored), the score statistics and threshold are "
        "refitted; both models are then compared on the test rows")] = None,
    test_data: Annotated[Path | None, typer.Option(
        "--test-data", help="a labelled table of a later period to test on (read with the "
        "training data's schema): --data's split trains, validates and chooses the threshold "
        "(the time protocol: its earliest 90% train, its latest 10% choose; no test window), "
        "and the metrics printed are this file's")] = None,
    labels_file: Annotated[Path | None, typer.Option(
        "--labels", help="labels from reviewed alerts (`aedetect alerts export`: transaction_id, label 1 "
        "fraud / 0 legit), joined to --data by transaction id (compared as text): a verdict overrides "
        "the table's label for its row; a table without a label column gets one, 'label', and its "
        "rows without a verdict are labelled 0 (normal: a fraud nobody reviewed trains as a normal "
        "row, as it does without labels). The labels serve --use-labels, the threshold rules and "
        "the test metrics")] = None,
    labels_db: LabelsDbOpt = None,
    labels_id_column: LabelsIdOpt = None,
    history_state: Annotated[Path | None, typer.Option(
        help="with --entity-columns: Parquet file of the entity history before --data (as `aedetect "
        "score --history-state` writes it): the data's history continues from it, so its first weeks "
        "are not young history (docs/history.md)")] = None,
    overwrite: OverwriteOpt = False,
):
    """Train on the training normals of a split and write the model folder.

    The table's schema is inferred (and printed) or read from --schema; without a label column
    every row trains. With --test-data, train on --data and test on the later file."""
    config = train_config(preset, config_file, settings, protocol=protocol, seed=seed,
                     hidden_units=parse_units(hidden_units), epochs=epochs,
                     threshold_rule=threshold_rule, input_pipeline=input_pipeline,
                     use_labels=use_labels)
    schema_opts = dict(schema_file=schema_file, label_column=label_column, time_column=time_column,
                       id_columns=id_columns, exclude_columns=exclude_columns,
                       categorical_columns=categorical_columns, entity_columns=entity_columns)
    from aedetect.files import check_output

    check_output(model_dir, inputs=[input_path(data), schema_file, config_file, test_data, labels_file,
                                    history_state],
                 folders=[warm_start], overwrite=overwrite, folder=True, what="model folder")
    if labels_id_column is not None and labels_file is None and labels_db is None:
        raise UsageError("--labels-id-column names the id column for --labels or --labels-db")
    if Path(data).is_dir():
        if (warm_start is not None or use_labels or test_data is not None or labels_file or labels_db
                or history_state is not None):
            raise UsageError("--warm-start, --use-labels, --labels, --test-data and --history-state read one "
                             "table; they do not take a folder of shards")
        if any(v for v in schema_opts.values()):
            raise UsageError("a folder of shards is read with the credit-card columns; the schema "
                             "options (--schema, --label-column, ...) take one table")
        _train_shards(Path(data), config, model_dir, overwrite)
    else:
        from aedetect.cli.review_commands import read_verdicts

        labels = read_verdicts(labels_file, labels_db)  # before the data loads
        if history_state is not None and warm_start is not None:
            raise UsageError("give --warm-start (its history continues) or --history-state, not both")
        _train(data, config, model_dir, overwrite, warm_start, schema_opts, test_data, labels,
               labels_id_column, history_state)
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
    need_tensorflow()
    from aedetect.cli.progress import TrainingProgress

    with TrainingProgress(config.param("epochs"), console) as progress:
        run = train_from_shards(folder, config, CREDITCARD, out=model_dir, overwrite=overwrite,
                                callbacks=[progress])
    det = run.detector
    console.print(f"trained {det.network_}, {det.n_epochs_} epochs (best {det.best_epoch_}) on {det.n_train_:,} "
                  f"normal rows streamed from {run.metadata['shards']} shard(s), validated on "
                  f"{det.n_validation_:,}; threshold {det.threshold_:.4g} ({det.threshold.rule})")



def evaluate(
    model_dir: Annotated[Path, typer.Option("--model", help="model folder")],
    data: Annotated[str | None, typer.Option(
        "--data", help="the labelled table to evaluate on (.csv, .csv.gz, .csv.zst, .parquet); "
        "'creditcard': the real ULB file [default: creditcard for a model of the credit-card "
        "columns; other models need it]")] = None,
    rows: Annotated[str, typer.Option(
        help="'test': the test split the model was trained with (same data file); 'all'")] = "test",
    metrics_out: Annotated[Path | None, typer.Option("--out", help="write metrics.json")] = None,
    report_dir: Annotated[Path | None, typer.Option(
        "--report", help="folder for report.html (self-contained), its PNGs and metrics.json")] = None,
    alerts_per_day: Annotated[float, typer.Option(help="daily alert budget for the report")] = 50.0,
    as_json: JsonOpt = False,
    overwrite: OverwriteOpt = False,
):
    """Evaluate a model on labelled data: metrics table and metrics.json."""
    from aedetect.files import check_output
    from aedetect.store.folder import open_folder

    if rows not in ("test", "all"):
        raise UsageError(f"--rows must be 'test' or 'all'; got {rows!r}")
    folder = open_folder(model_dir)  # a bad model folder fails fast, before data and TensorFlow load
    if data is None:
        data = _default_data(folder, model_dir)
    reads = dict(inputs=[input_path(data)], folders=[model_dir], overwrite=overwrite)
    if metrics_out is not None:
        check_output(metrics_out, **reads, what="metrics file")
    if report_dir is not None:
        check_output(report_dir, **reads, folder=True, what="report", option="--report")
    df, path = read_data(data)
    det = load_model(folder)
    from aedetect.evaluation.metrics import evaluate_model
    ev = evaluate_model(det, df, rows, alerts_per_day=alerts_per_day, source=str(path))
    print_metrics(ev.metrics, metrics_out, as_json, det.dataset_schema)
    if report_dir is not None:
        from aedetect.evaluation.report import evaluation_report

        with console.status("drawing the report"):
            rep = evaluation_report(det, ev.y, ev.scores, ev.errors, ev.metrics,
                                    f"aedetect evaluation: {model_dir}")
            path = rep.write(report_dir, ev.metrics, overwrite=overwrite)
        console.print(f"report written to {escape(str(path))}")


def _default_data(folder, model_dir: Path) -> str:
    """'creditcard' for a model of the credit-card columns; any other model was trained on a
    table of its own, which evaluate cannot guess: a usage error at once, naming that table."""
    from aedetect.data.creditcard import CREDITCARD

    if list(folder.manifest.input_schema.feature_names) == list(CREDITCARD.features):
        return "creditcard"
    trained_on = folder.manifest.metadata.get("data_file")
    hint = f" (--data {trained_on} for the test split it was trained with)" if trained_on else ""
    raise UsageError(f"{model_dir} was trained on {trained_on or 'a table of its own'}, not the credit-card "
                     f"data: pass --data with the labelled table to evaluate on{hint}")


def compare(
    data: Annotated[str, typer.Option(
        "--data", help="'creditcard' to fetch the real ULB file, or a labelled .csv/.parquet table: "
        "its columns (Time, V1..V28, Amount, Class), or any table read as `train` reads it (the "
        "schema options below)")] = "creditcard",
    protocol: Annotated[str | None, typer.Option(
        help="split protocol: 'guide', 'time' or 'auto' (time-ordered with a time column) "
        "[default: guide on the ULB columns, else auto]")] = None,
    seed: SeedOpt = 0,
    seeds: Annotated[int, typer.Option(help="repeat split and training for this many seeds")] = 1,
    epochs: Annotated[int | None, typer.Option(help="at most [default: 100]")] = None,
    alerts_per_day: Annotated[float, typer.Option(help="daily alert budget")] = 50.0,
    lof_max_train: Annotated[int, typer.Option(help="LocalOutlierFactor trains on at most this "
                                               "many normals")] = 20_000,
    use_labels: Annotated[bool, typer.Option(
        "--use-labels", help="also the label-aware mode (`train --use-labels`) on the same autoencoder: "
        "the labels outside the test rows, as the supervised ceiling uses them")] = False,
    report_dir: Annotated[Path | None, typer.Option(
        "--report", help="folder for report.html, compare.md and metrics.json")] = None,
    label_column: LabelOpt = None,
    time_column: TimeOpt = None,
    id_columns: IdsOpt = "",
    exclude_columns: ExcludeOpt = "",
    categorical_columns: CategoricalOpt = "",
    entity_columns: EntityOpt = "",
    schema_file: SchemaOpt = None,
    as_json: JsonOpt = False,
    overwrite: OverwriteOpt = False,
):
    """The autoencoder beside IsolationForest, PCA, LocalOutlierFactor and a supervised ceiling.

    On the ULB data, or on any labelled table: its schema is inferred (and printed) or read from
    --schema, as `train` reads it; with --entity-columns every method reads the same history
    features, on the rows the autoencoder trains and tests on. With --use-labels, the
    label-aware mode too, on the same autoencoder."""
    from rich.table import Table

    from aedetect.data.creditcard import CREDITCARD
    from aedetect.training.compare import METRICS, compare_methods, comparison_report, markdown_table, table_rows

    schema_opts = dict(schema_file=schema_file, label_column=label_column, time_column=time_column,
                       id_columns=id_columns, exclude_columns=exclude_columns,
                       categorical_columns=categorical_columns, entity_columns=entity_columns)
    if report_dir is not None:
        from aedetect.files import check_output

        check_output(report_dir, inputs=[input_path(data), schema_file], overwrite=overwrite, folder=True,
                     what="report", option="--report")
    ulb = data == "creditcard" or (not any(schema_opts.values()) and _has_ulb_columns(Path(data)))
    if ulb:  # the credit-card columns, read as the guide does
        df, _ = load_credit_table(data)
        schema = CREDITCARD
    else:
        from aedetect.cli.ui import schema_table

        df, path, schema = load_table(data, **schema_opts)
        console.print(schema_table(schema, title=f"schema of {escape(str(path))}"))
        if schema.label is None:
            raise UsageError(f"{data}: compare needs a label column (0 normal, 1 anomaly) to score every "
                             "method; name it with --label-column")
    protocol = protocol or ("guide" if ulb else "auto")
    config = train_config(protocol=protocol, seed=seed, epochs=epochs, use_labels=use_labels or None)
    need_tensorflow()
    with console.status("comparing") as status:
        cmp = compare_methods(df, config, seeds, schema=schema, alerts_per_day=alerts_per_day,
                              lof_max_train=lof_max_train, progress=status.update)
    if as_json:
        import json

        print(json.dumps(cmp.to_dict(), indent=2))
    else:
        table = Table(title=f"test set, {cmp.protocol} protocol, seeds {cmp.seeds}")
        for h in ["method", *METRICS.values(), "how it was run"]:
            table.add_column(h, justify="left" if h in ("method", "how it was run") else "right")
        for row in table_rows(cmp):
            table.add_row(*row)
        out.print(table)
    if report_dir is not None:
        rep = comparison_report(cmp)
        path = rep.write(report_dir, cmp.to_dict(), extra={"compare.md": markdown_table(cmp)},
                         overwrite=overwrite)
        console.print(f"report written to {escape(str(path))}")



def _has_ulb_columns(path: Path) -> bool:
    """Whether the table at `path` holds the credit-card columns (its header only); False when it
    cannot be read (the full read then names the problem)."""
    from aedetect.data.creditcard import CREDITCARD
    from aedetect.data.io import column_names

    try:
        return set(CREDITCARD.names) <= set(column_names(path))
    except Exception:  # noqa: BLE001 - unreadable here: the full read says why
        return False


def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="folder for metrics.json and the model")] = Path("runs/demo"),
    data: CreditDataOpt = "creditcard",
    seed: SeedOpt = 0,
    epochs: Annotated[int | None, typer.Option(help="at most [default: 100]")] = None,
    offline_rows: Annotated[int, typer.Option(
        help="rows of generated data used when the real file cannot be fetched")] = 100_000,
    overwrite: OverwriteOpt = False,
):
    """Fetch the real data (generated data when offline), train, evaluate, print the table."""
    from aedetect.cli.ui import fetch_with_progress
    from aedetect.files import check_output
    from aedetect.training.demo import demo_data

    check_output(out_dir / "model", inputs=[input_path(data)], overwrite=overwrite, folder=True,
                 what="model folder")
    check_output(out_dir / "metrics.json", inputs=[input_path(data)], overwrite=overwrite, what="metrics file")
    demo = demo_data(data, out_dir, offline_rows=offline_rows, seed=seed,
                     fetch=lambda: fetch_with_progress(None))
    if demo.fallback is not None:
        console.print(f"[yellow]cannot fetch the real data ({demo.fallback}); using {offline_rows:,} "
                      "rows of generated data instead: the numbers below are NOT the ULB "
                      "results[/yellow]")
    config = train_config(seed=seed, epochs=epochs, protocol="guide")  # the README's numbers
    df, run = _train(demo.data, config, out_dir / "model", overwrite=overwrite)
    from aedetect.training.demo import demo_metrics
    print_metrics(demo_metrics(run, df), out_dir / "metrics.json", schema=run.detector.dataset_schema)
