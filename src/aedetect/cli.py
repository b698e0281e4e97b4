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

from aedetect.errors import AedetectError  # noqa: E402

app = typer.Typer(help="Anomaly detection in tabular data with autoencoders.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Fetch, generate and convert data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console(stderr=True)
out = Console()

DataOpt = Annotated[str, typer.Option(
    "--data", help="CSV/Parquet file with the credit-card columns, or 'creditcard' to fetch "
    "the real ULB file")]
SeedOpt = Annotated[int, typer.Option(help="seed for the split, the weights and the shuffling")]
ProtocolOpt = Annotated[str, typer.Option(help="split protocol: 'guide' or 'time'")]


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
    split = split_frame(df, _config(protocol=protocol, seed=seed))
    with console.status("writing TFRecord shards"):
        write_split_tfrecords(df, split, out_dir)
    console.print(f"wrote {split.sizes()} rows as shards to {out_dir}")


def _config(**kwargs):
    from aedetect.config import TrainConfig

    try:
        return TrainConfig(**{k: v for k, v in kwargs.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise AedetectError(f"option {first['loc'][0]!r}: {first['msg']}") from None


def _units(text: str) -> list[int]:
    try:
        return [int(u) for u in text.split(",") if u.strip()]
    except ValueError:
        raise AedetectError(f"--hidden-units must be comma-separated integers like 20,8,20; "
                            f"got {text!r}") from None


def _train(data, config, model_dir: Path | None, overwrite: bool):
    from aedetect.train import train_detector
    from aedetect.ui import TrainingProgress

    if model_dir is not None and model_dir.exists() and not overwrite:
        raise AedetectError(f"{model_dir} already exists; pass --overwrite to replace it")
    df, path = _load(data)
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
    return df, result


@app.command()
def train(
    model_dir: Annotated[Path, typer.Option("--out", help="model folder to write")],
    data: DataOpt = "creditcard",
    protocol: ProtocolOpt = "guide",
    seed: SeedOpt = 0,
    hidden_units: Annotated[str, typer.Option(help="hidden layer sizes")] = "20,8,20",
    activation: str = "tanh",
    epochs: int = 50,
    batch_size: int = 2048,
    learning_rate: float = 3e-3,
    patience: int = 5,
    noise_std: float = 0.0,
    dropout: float = 0.0,
    l2: float = 0.0,
    input_pipeline: Annotated[str, typer.Option(help="'memory' or 'tfrecord'")] = "memory",
    threshold_rule: Annotated[str, typer.Option(
        help="fixed | best_f1 | normal_percentile | min_precision")] = "normal_percentile",
    threshold: Annotated[float | None, typer.Option(help="value for the fixed rule")] = None,
    percentile: Annotated[float, typer.Option(help="q for normal_percentile")] = 99.9,
    min_precision: float = 0.93,
    overwrite: bool = False,
):
    """Train on the training normals of a split and write the model folder."""
    config = _config(protocol=protocol, seed=seed, hidden_units=_units(hidden_units),
                     activation=activation, epochs=epochs, batch_size=batch_size,
                     learning_rate=learning_rate, patience=patience, noise_std=noise_std,
                     dropout=dropout, l2=l2, input_pipeline=input_pipeline,
                     threshold_rule=threshold_rule, threshold_value=threshold,
                     threshold_percentile=percentile, min_precision=min_precision)
    _train(data, config, model_dir, overwrite)
    console.print(f"model written to {model_dir}")


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Option("--model", help="model folder")],
    data: DataOpt = "creditcard",
    rows: Annotated[str, typer.Option(
        help="'test': the test split the model was trained with (same data file); 'all'")] = "test",
    metrics_out: Annotated[Path | None, typer.Option("--out", help="write metrics.json")] = None,
):
    """Evaluate a model on labelled data: metrics table and metrics.json."""
    from aedetect.artifact import load_detector
    from aedetect.train import evaluate_detector, frame_fingerprint, split_frame

    det = load_detector(model_dir)
    df, _ = _load(data)
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
    metrics = evaluate_detector(det, df, idx)
    metrics.update(seed=seed, protocol=protocol)
    _report(metrics, metrics_out)


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
):
    """Score a file: the same rows with `score` and `flag` columns added."""
    from aedetect.artifact import load_detector
    from aedetect.data.io import read_raw, write_table
    from aedetect.data.schema import CREDITCARD, Schema, validate_frame

    det = load_detector(model_dir)
    schema = Schema(features=tuple(det.feature_names_in_), label=CREDITCARD.label)
    df = read_raw(data)
    checked = validate_frame(df, schema, source=str(data), require_label=False, allow_extra=True)
    scores = det.score_samples(checked[list(schema.features)])
    df = df.copy()
    df["score"] = scores
    df["flag"] = (scores > det.threshold_).astype("int8")
    write_table(df, out_file)
    console.print(f"scored {len(df):,} rows, flagged {int(df['flag'].sum()):,} "
                  f"(threshold {det.threshold_:.4g}); wrote {out_file}")


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="folder for metrics.json and the model")] = Path("runs/demo"),
    data: DataOpt = "creditcard",
    seed: SeedOpt = 0,
    epochs: int = 50,
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
    from aedetect._quiet import import_tensorflow_quietly

    try:
        import_tensorflow_quietly()
        app()
    except AedetectError as exc:
        console.print(f"[bold red]error:[/bold red] {exc}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; nothing was written[/yellow]")
        sys.exit(130)


if __name__ == "__main__":
    main()
