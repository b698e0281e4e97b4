"""The `aedetect` command: a thin Typer layer over the library functions."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter quiet

import typer  # noqa: E402
from pydantic import ValidationError  # noqa: E402
from rich.console import Console  # noqa: E402

from aedetect.config import default_of  # noqa: E402
from aedetect.errors import AedetectError  # noqa: E402

app = typer.Typer(help="Anomaly detection in tabular data with autoencoders.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Fetch, generate and convert data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console(stderr=True, soft_wrap=True)  # messages are not cut at 80 columns
out = Console()

DataOpt = Annotated[str, typer.Option(
    "--data", help="CSV/Parquet file with the credit-card columns, or 'creditcard' to fetch "
    "the real ULB file")]
SeedOpt = Annotated[int, typer.Option(help="seed for the split, the weights and the shuffling")]
ProtocolOpt = Annotated[str, typer.Option(help="split protocol: 'guide' or 'time'")]


def _tensorflow():
    """Load TensorFlow (quietly) before any module that needs it; --help and errors stay fast."""
    from aedetect._quiet import import_tensorflow_quietly

    import_tensorflow_quietly()


def _load(data: str, cache_dir: Path | None = None):
    from aedetect.data.io import read_table
    from aedetect.ui import fetch_with_progress

    path = fetch_with_progress(cache_dir) if data == "creditcard" else Path(data)
    with console.status(f"reading {path}"):
        return read_table(path), path


@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="data set name; only 'creditcard'")] = "creditcard",
    cache_dir: Annotated[Path | None, typer.Option(help="default: $AEDETECT_CACHE or "
                                                   "~/.cache/aedetect")] = None,
):
    """Download the ULB credit-card file (verified by sha256) and print its path."""
    from aedetect.ui import fetch_with_progress

    if name != "creditcard":
        raise AedetectError(f"unknown data set {name!r}; available: 'creditcard'")
    print(fetch_with_progress(cache_dir))


@data_app.command("generate")
def data_generate(
    out_file: Annotated[Path, typer.Option("--out", help="output .csv or .parquet")],
    rows: Annotated[int, typer.Option(help="number of rows")] = 50_000,
    fraud_rate: Annotated[float, typer.Option(help="share of anomalies (Class=1)")] = 0.01,
    seed: SeedOpt = 0,
):
    """Write generated transactions with the credit-card columns and a known anomaly share."""
    from aedetect.data.generate import generate_transactions
    from aedetect.data.io import write_table

    try:
        df = generate_transactions(rows, fraud_rate, seed)
    except ValueError as exc:
        raise AedetectError(str(exc)) from None
    write_table(df, out_file)
    console.print(f"wrote {len(df):,} rows ({int(df['Class'].sum()):,} anomalies) to {out_file}")


@data_app.command("to-tfrecord")
def data_to_tfrecord(
    out_dir: Annotated[Path, typer.Option("--out", help="folder for the shards")],
    data: DataOpt = "creditcard",
    protocol: ProtocolOpt = "guide",
    seed: SeedOpt = 0,
):
    """Split the data and write each part (train, validation, selection, test) as TFRecord shards."""
    from aedetect.train import split_frame, write_split_tfrecords

    df, _ = _load(data)
    _tensorflow()
    split = split_frame(df, _config(protocol=protocol, seed=seed))
    with console.status("writing TFRecord shards"):
        write_split_tfrecords(df, split, out_dir)
    console.print(f"wrote {split.sizes()} rows as shards to {out_dir}")


def _config(preset: str = "default", **kwargs):
    """A TrainConfig from a preset plus the options given (None = not given)."""
    from aedetect.config import PRESETS, TrainConfig

    if preset not in PRESETS:
        raise AedetectError(f"--preset must be one of {sorted(PRESETS)}; got {preset!r}")
    given = {k: v for k, v in kwargs.items() if v is not None}
    return _settings(TrainConfig, **{**PRESETS[preset], **given})


def _load_model(model_dir: Path, check_only: bool = False):
    """Verify the folder first (fast, no TensorFlow), then load it."""
    from aedetect.artifact import load_detector, read_manifest

    read_manifest(model_dir)
    _tensorflow()
    return None if check_only else load_detector(model_dir)


def _units(text: str) -> list[int] | str:
    if text.strip() == "auto":
        return "auto"
    try:
        return [int(u) for u in text.split(",") if u.strip()]
    except ValueError:
        raise AedetectError(f"--hidden-units must be comma-separated integers like 20,8,20; "
                            f"got {text!r}") from None


def _train(data, config, model_dir: Path | None, overwrite: bool):
    if model_dir is not None and model_dir.exists() and not overwrite:
        raise AedetectError(f"{model_dir} already exists; pass --overwrite to replace it")
    df, path = _load(data)
    _tensorflow()
    from aedetect.callbacks import TrainingProgress
    from aedetect.train import train_detector

    with tempfile.TemporaryDirectory(prefix="aedetect-shards-") as work:
        with TrainingProgress(config.epochs, console) as progress:
            result = train_detector(df, config, callbacks=[progress], work_dir=work)
    det = result.detector
    meta = {"data_file": str(path), "data_fingerprint": result.data_fingerprint,
            "protocol": config.protocol, "seed": config.seed, "split_sizes": result.split.sizes(),
            "config": config.model_dump()}
    if model_dir is not None:
        det.save(model_dir, metadata=meta, overwrite=overwrite)
    console.print(f"trained {det.n_epochs_} epochs (best {det.best_epoch_}) on "
                  f"{det.n_train_:,} normal rows; threshold {det.threshold_:.4g} "
                  f"({det.threshold.rule}, {det.threshold.source})")
    est = det.threshold.estimate
    if est:
        from aedetect.report import interval

        console.print(f"expected on the {est['rows']}: precision {interval(est['precision'])}, "
                      f"recall {interval(est['recall'])} (95% bootstrap intervals)")
    for w in det.threshold.warnings:
        console.print(f"[yellow]warning: {w}[/yellow]")
    return df, result


@app.command()
def train(
    model_dir: Annotated[Path, typer.Option("--out", help="model folder to write")],
    data: DataOpt = "creditcard",
    protocol: ProtocolOpt = "guide",
    seed: SeedOpt = 0,
    preset: Annotated[str, typer.Option(
        help="starting configuration: 'default' or 'guide' (20-8-20 tanh, MSE, 5 epochs, batch 256)")
    ] = "default",
    hidden_units: Annotated[str | None, typer.Option(
        help="hidden layer sizes, e.g. 64,32,16,32,64; 'auto': 64-32-code-32-64 with the code "
        "sized to the data (at most 16) \\[default: auto]")] = None,
    activation: Annotated[str | None, typer.Option(help=f"\\[default: {default_of('activation')}]")] = None,
    epochs: Annotated[int | None, typer.Option(help=f"at most \\[default: {default_of('epochs')}]")] = None,
    batch_size: Annotated[int | None, typer.Option(help=f"\\[default: {default_of('batch_size')}]")] = None,
    learning_rate: Annotated[float | None, typer.Option(
        help=f"\\[default: {default_of('learning_rate')}]")] = None,
    patience: Annotated[int | None, typer.Option(
        help=f"early-stopping patience in epochs \\[default: {default_of('patience')}]")] = None,
    noise_std: Annotated[float | None, typer.Option(help="input noise while training \\[default: 0]")] = None,
    dropout: Annotated[float | None, typer.Option(help="\\[default: 0]")] = None,
    l2: Annotated[float | None, typer.Option(help="weight decay \\[default: 0]")] = None,
    score: Annotated[str | None, typer.Option(
        help="mse | feature_normalized | residual_mahalanobis (see aedetect.scores) "
        f"\\[default: {default_of('score')}]")] = None,
    input_pipeline: Annotated[str, typer.Option(help="'memory' or 'tfrecord'")] = "memory",
    threshold_rule: Annotated[str, typer.Option(
        help="fixed | normal_percentile | contamination | alert_budget (label-free); best_f1 | "
        "min_precision | max_fpr | expected_cost (use the labelled selection set)")] = "normal_percentile",
    threshold: Annotated[float | None, typer.Option(help="value for the fixed rule")] = None,
    percentile: Annotated[float, typer.Option(help="q for normal_percentile")] = 99.9,
    min_precision: float = 0.93,
    max_fpr: Annotated[float, typer.Option(help="highest false-positive rate for max_fpr")] = 0.001,
    alerts_per_day: Annotated[float, typer.Option(help="alert budget a day for alert_budget")] = 50.0,
    cost_missed: Annotated[float, typer.Option(help="expected_cost: cost of a missed anomaly")] = 100.0,
    cost_review: Annotated[float, typer.Option(help="expected_cost: cost of reviewing an alert")] = 5.0,
    cost_per_amount: Annotated[bool, typer.Option(help="expected_cost: a miss costs cost_missed x Amount")] = False,
    contamination: Annotated[float, typer.Option(help="share of rows flagged by contamination")] = 0.001,
    overwrite: bool = False,
):
    """Train on the training normals of a split and write the model folder."""
    config = _config(preset=preset, protocol=protocol, seed=seed,
                     hidden_units=_units(hidden_units) if hidden_units else None,
                     activation=activation, epochs=epochs, batch_size=batch_size,
                     learning_rate=learning_rate, patience=patience, noise_std=noise_std,
                     dropout=dropout, l2=l2, score=score, input_pipeline=input_pipeline,
                     threshold_rule=threshold_rule, threshold_value=threshold,
                     threshold_percentile=percentile, min_precision=min_precision, max_fpr=max_fpr,
                     alerts_per_day=alerts_per_day, cost_missed=cost_missed, cost_review=cost_review,
                     cost_per_amount=cost_per_amount, contamination=contamination)
    _train(data, config, model_dir, overwrite)
    console.print(f"model written to {model_dir}")


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
):
    """Evaluate a model on labelled data: metrics table and metrics.json."""
    from aedetect.artifact import read_manifest
    from aedetect.data.schema import CREDITCARD

    read_manifest(model_dir)  # a bad model folder fails fast, before data and TensorFlow load
    df, _ = _load(data)
    det = _load_model(model_dir)
    from aedetect.train import evaluate_detector, frame_fingerprint, split_frame

    meta = det.manifest_.metadata
    if rows == "test":
        if meta.get("data_fingerprint") != frame_fingerprint(df):
            raise AedetectError(
                f"{data} is not the file this model was trained on, so its test split is "
                "unknown; pass --rows all to evaluate on every row")
        config = _config(**meta["config"])
        split = split_frame(df, config)
        idx, protocol, seed = split.test, config.protocol, config.seed
    elif rows == "all":
        idx, protocol, seed = None, "all rows", meta.get("seed")
    else:
        raise AedetectError(f"--rows must be 'test' or 'all'; got {rows!r}")
    metrics = evaluate_detector(det, df, idx, alerts_per_day=alerts_per_day)
    metrics.update(seed=seed, protocol=protocol)
    _report(metrics, metrics_out)
    if report_dir is not None:
        from aedetect.report import evaluation_report

        part = df if idx is None else df.iloc[idx]
        x = part[list(det.feature_names_in_)]
        with console.status("drawing the report"):
            scores, errors = det.score_and_errors(x)
            rep = evaluation_report(det, part[CREDITCARD.label].to_numpy(), scores, errors, metrics,
                                    f"aedetect evaluation: {model_dir}")
            path = rep.write(report_dir, metrics)
        console.print(f"report written to {path}")


@app.command()
def compare(
    data: DataOpt = "creditcard",
    protocol: ProtocolOpt = "guide",
    seed: SeedOpt = 0,
    seeds: Annotated[int, typer.Option(help="repeat split and training for this many seeds")] = 1,
    epochs: Annotated[int | None, typer.Option(help=f"at most \\[default: {default_of('epochs')}]")] = None,
    alerts_per_day: Annotated[float, typer.Option(help="daily alert budget")] = 50.0,
    lof_max_train: Annotated[int, typer.Option(help="LocalOutlierFactor trains on at most this "
                                               "many normals")] = 20_000,
    report_dir: Annotated[Path | None, typer.Option(
        "--report", help="folder for report.html, compare.md and metrics.json")] = None,
):
    """The autoencoder beside IsolationForest, PCA, LocalOutlierFactor and a supervised ceiling."""
    from rich.table import Table

    from aedetect.compare import METRICS, compare_methods, comparison_report, markdown_table, table_rows

    config = _config(protocol=protocol, seed=seed, epochs=epochs)
    df, _ = _load(data)
    _tensorflow()
    with console.status("comparing") as status:
        cmp = compare_methods(df, config, seeds, alerts_per_day=alerts_per_day,
                              lof_max_train=lof_max_train, progress=status.update)
    table = Table(title=f"test set, {protocol} protocol, seeds {cmp.seeds}")
    for h in ["method", *METRICS.values(), "how it was run"]:
        table.add_column(h, justify="left" if h in ("method", "how it was run") else "right")
    for row in table_rows(cmp):
        table.add_row(*row)
    out.print(table)
    if report_dir is not None:
        rep = comparison_report(cmp)
        path = rep.write(report_dir, cmp.to_dict(), extra={"compare.md": markdown_table(cmp)})
        console.print(f"report written to {path}")


def _report(metrics: dict, path: Path | None) -> None:
    from aedetect.ui import metrics_table

    out.print(metrics_table(metrics))
    if path is not None:
        from aedetect.ui import write_json

        write_json(metrics, path)
        console.print(f"metrics written to {path}")


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
    from aedetect.scoring import score_file
    from aedetect.ui import ScoringProgress

    if on_bad_rows not in ("error", "skip"):
        raise AedetectError(f"--on-bad-rows must be 'error' or 'skip'; got {on_bad_rows!r}")
    if chunk_rows < 1 or top_k < 0:
        raise AedetectError(f"--chunk-rows must be >= 1 and --top-k >= 0; got {chunk_rows}, {top_k}")
    det = _load_model(model_dir)
    ids = [c.strip() for c in id_columns.split(",") if c.strip()]
    try:
        with ScoringProgress(console) as progress:
            s = score_file(det, data, out_file, id_columns=ids, all_columns=all_columns, top_k=top_k,
                           chunk_rows=chunk_rows, on_bad_rows=on_bad_rows, progress=progress)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted; no output was written ({out_file} is unchanged)[/yellow]")
        sys.exit(130)
    console.print(f"scored {s.rows_scored:,} of {s.rows_read:,} rows in {s.seconds:.1f} s "
                  f"({s.rows_per_second:,.0f} rows/s), flagged {s.rows_flagged:,} "
                  f"(threshold {s.threshold:.4g}); wrote {s.output}")
    if s.bad_rows_file is not None:
        console.print(f"skipped {s.rows_skipped:,} bad row(s); rows and reasons in {s.bad_rows_file}")


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
):
    """Serve the model over HTTP: POST /v1/score, GET /healthz, /v1/model, /metrics."""
    import uvicorn

    from aedetect.service import ServiceSettings, create_app

    settings = _settings(ServiceSettings, max_batch=max_batch, max_body_bytes=max_body_bytes,
                         api_key_env=api_key_env, top_k=top_k)
    _load_model(model_dir, check_only=True)
    api = create_app(model_dir, settings)
    auth = "on" if api.state.api_key else f"off (set {api_key_env} to turn it on)"
    console.print(f"serving {model_dir} on http://{host}:{port} (API-key auth {auth})")
    uvicorn.run(api, host=host, port=port, log_level="warning")


def _settings(cls, **kwargs):
    try:
        return cls(**kwargs)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise AedetectError(f"option {first['loc'][0]!r}: {first['msg']}") from None


@app.command()
def export(
    model_dir: Annotated[Path, typer.Option("--model", help="model folder")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder to write the export to")],
    fmt: Annotated[str, typer.Option("--format", help="only 'savedmodel'")] = "savedmodel",
    overwrite: bool = False,
):
    """Export a TensorFlow SavedModel that takes raw columns and returns score and flag."""
    if fmt != "savedmodel":
        raise AedetectError(f"--format must be 'savedmodel'; got {fmt!r}")
    det = _load_model(model_dir)
    from aedetect.export import export_savedmodel

    with console.status("writing SavedModel"):
        export_savedmodel(det, out_dir, overwrite=overwrite)
    console.print(f"SavedModel written to {out_dir} (signature 'serving_default': one float32 "
                  f"[None] input per column {det.feature_names_in_[0]!r}..."
                  f"{det.feature_names_in_[-1]!r}; outputs 'score', 'flag')")


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="folder for metrics.json and the model")] = Path("runs/demo"),
    data: DataOpt = "creditcard",
    seed: SeedOpt = 0,
    epochs: Annotated[int | None, typer.Option(help=f"at most \\[default: {default_of('epochs')}]")] = None,
    offline_rows: Annotated[int, typer.Option(
        help="rows of generated data used when the real file cannot be fetched")] = 100_000,
):
    """Fetch the real data (generated data when offline), train, evaluate, print the table."""
    from aedetect.data.generate import generate_transactions
    from aedetect.data.io import write_table

    if data == "creditcard":
        try:
            from aedetect.ui import fetch_with_progress

            fetch_with_progress(None)
        except AedetectError as exc:
            console.print(f"[yellow]cannot fetch the real data ({exc}); using {offline_rows:,} "
                          "rows of generated data instead: the numbers below are NOT the ULB "
                          "results[/yellow]")
            data = str(out_dir / "generated.csv")
            write_table(generate_transactions(offline_rows, 0.01, seed), data)
    config = _config(seed=seed, epochs=epochs)
    df, result = _train(data, config, out_dir / "model", overwrite=True)
    from aedetect.train import evaluate_detector

    metrics = evaluate_detector(result.detector, df, result.split.test)
    metrics.update(seed=seed, protocol=config.protocol)
    _report(metrics, out_dir / "metrics.json")


def main() -> None:
    try:
        app()
    except AedetectError as exc:
        console.print(f"[bold red]error:[/bold red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; nothing was written[/yellow]")
        sys.exit(130)


if __name__ == "__main__":
    main()
