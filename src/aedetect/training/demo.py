"""The demo's data and evaluation: the real ULB file, or generated rows when it cannot be fetched
(offline, say), so that the demo runs anywhere; the CLI says which one it used."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from aedetect.errors import AedetectError
from aedetect.evaluation.metrics import evaluate_detector
from aedetect.training.run import TrainingRun

GENERATED_FRAUD_RATE = 0.01  # share of anomalies in the generated rows


@dataclass(frozen=True)
class DemoData:
    data: str  # the table to train on
    fallback: str | None = None  # why the real file could not be fetched, when it could not


def demo_data(data: str, out_dir: str | os.PathLike, *, offline_rows: int = 100_000, seed: int = 0,
              fetch: Callable[[], Path] | None = None) -> DemoData:
    """`data` as given, or for 'creditcard' the fetched file (`fetch`, default `fetch_creditcard`);
    when that fails, `offline_rows` generated rows written to OUT_DIR/generated.csv."""
    from aedetect.data.fetch import fetch_creditcard
    from aedetect.data.generate import generate_transactions
    from aedetect.data.io import write_table

    if data != "creditcard":
        return DemoData(data)
    try:
        return DemoData(str((fetch or fetch_creditcard)()))
    except AedetectError as exc:
        path = Path(out_dir) / "generated.csv"
        write_table(generate_transactions(offline_rows, GENERATED_FRAUD_RATE, seed), path)
        return DemoData(str(path), fallback=str(exc))


def demo_metrics(run: TrainingRun, df: pd.DataFrame) -> dict:
    """The trained model on its split's test rows (`evaluate_detector`), with the protocol."""
    metrics = evaluate_detector(run.detector, df, run.split.test, run.detector.dataset_schema,
                                seed=run.config.seed)
    metrics["protocol"] = run.split.protocol
    return metrics
