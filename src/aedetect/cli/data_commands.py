"""`aedetect data ...` and `aedetect schema infer`: fetch, generate, convert and describe tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from aedetect.cli.common import (
    CategoricalOpt,
    CreditDataOpt,
    EntityOpt,
    ExcludeOpt,
    IdsOpt,
    LabelOpt,
    OverwriteOpt,
    ProtocolOpt,
    SplitSeedOpt,
    TimeOpt,
    UsageError,
    console,
    input_path,
    load_credit_table,
    load_table,
    need_tensorflow,
    out,
    train_config,
)


def schema_infer(
    data: Annotated[str, typer.Option("--data", help="a table (.csv, .csv.gz, .csv.zst, .parquet)")],
    out_file: Annotated[Path | None, typer.Option("--out", help="write the schema (.yaml/.json) "
                                                  "to edit and pass to train --schema")] = None,
    label_column: LabelOpt = None,
    time_column: TimeOpt = None,
    id_columns: IdsOpt = "",
    exclude_columns: ExcludeOpt = "",
    categorical_columns: CategoricalOpt = "",
    entity_columns: EntityOpt = "",
    overwrite: OverwriteOpt = False,
):
    """Infer each column's role and type; print the table and write it to edit."""
    from aedetect.cli.ui import schema_table
    from aedetect.files import check_output

    if out_file is not None:
        check_output(out_file, inputs=[input_path(data)], overwrite=overwrite, what="schema")
    _, path, schema = load_table(data, None, label_column, time_column, id_columns,
                                  exclude_columns, categorical_columns, entity_columns=entity_columns)
    out.print(schema_table(schema, title=f"schema of {path}"))
    if out_file is not None:
        schema.to_file(out_file)
        console.print(f"schema written to {out_file}")


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


def data_generate(
    out_file: Annotated[Path, typer.Option("--out", help="output .csv or .parquet")],
    rows: Annotated[int | None, typer.Option(
        help="number of rows (creditcard and transactions kinds; default 50,000)")] = None,
    fraud_rate: Annotated[float | None, typer.Option(
        help="share of anomalies (default 0.01; 0.005 for the payments kind)")] = None,
    seed: Annotated[int, typer.Option(help="seed of the generator: a seed writes the same rows every time")] = 0,
    kind: Annotated[str, typer.Option(
        help="'creditcard': the ULB columns (Time, V1..V28, Amount, Class); 'transactions': ids, "
        "timestamps, categories, missing values, is_fraud and fraud_kind; 'payments': a raw log "
        "(card_id, terminal_id, amount) whose frauds show only against each card's and "
        "terminal's own history")] = "creditcard",
    days: Annotated[int | None, typer.Option(help="payments kind: days of log (default 60)")] = None,
    cards: Annotated[int | None, typer.Option(help="payments kind: cards (default 2000)")] = None,
    terminals: Annotated[int | None, typer.Option(
        help="payments kind: terminals (default 400)")] = None,
    overwrite: OverwriteOpt = False,
):
    """Write generated data with a known share of anomalies (.csv, .csv.gz, .csv.zst, .parquet)."""
    from aedetect.data.creditcard import LABEL
    from aedetect.data.generate import (
        generate_payment_log,
        generate_transaction_log,
        generate_transactions,
    )
    from aedetect.data.io import write_table

    kinds = {"creditcard": (generate_transactions, LABEL),
             "transactions": (generate_transaction_log, "is_fraud"),
             "payments": (generate_payment_log, "is_fraud")}
    if kind not in kinds:
        raise UsageError(f"--kind must be one of {sorted(kinds)}; got {kind!r}")
    make, label = kinds[kind]
    payments = {"--days": days, "--cards": cards, "--terminals": terminals}
    if kind == "payments" and rows is not None:
        raise UsageError("--rows does not apply to --kind payments; its size is --days, --cards "
                         "and --terminals")
    if kind != "payments" and any(v is not None for v in payments.values()):
        raise UsageError(f"--kind {kind} takes no "
                         f"{', '.join(k for k, v in payments.items() if v is not None)}; "
                         "they size --kind payments")
    given = {"n_rows": rows, "fraud_rate": fraud_rate, "n_days": days, "n_cards": cards,
             "n_terminals": terminals}  # what is not given takes the generator's default
    from aedetect.files import check_output

    check_output(out_file, overwrite=overwrite, what="data file")
    try:
        df = make(seed=seed, **{k: v for k, v in given.items() if v is not None})
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    write_table(df, out_file)
    console.print(f"wrote {len(df):,} rows ({int(df[label].sum()):,} anomalies) to {escape(str(out_file))}")


def data_to_tfrecord(
    out_dir: Annotated[Path, typer.Option("--out", help="folder for the shards")],
    data: CreditDataOpt = "creditcard",
    protocol: ProtocolOpt = "guide",
    seed: SplitSeedOpt = 0,
    overwrite: OverwriteOpt = False,
):
    """Split the data and write each part (train, validation, selection, test) as TFRecord shards."""
    from aedetect.data.creditcard import CREDITCARD
    from aedetect.files import atomic_folder, check_output
    from aedetect.training.workflow import split_frame, write_split_tfrecords

    check_output(out_dir, inputs=[input_path(data)], overwrite=overwrite, folder=True, what="shard folder")
    df, _ = load_credit_table(data)
    need_tensorflow()
    split = split_frame(df, train_config(protocol=protocol, seed=seed), CREDITCARD)
    with console.status("writing TFRecord shards"), atomic_folder(out_dir, overwrite=overwrite) as tmp:
        write_split_tfrecords(df, split, tmp, CREDITCARD)
    console.print(f"wrote {split.sizes()} rows as shards to {escape(str(out_dir))}")
