"""`aedetect review` (the review app, its users, its database) and `aedetect alerts` (alerts in
from scored files, labels out)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from aedetect.cli.common import JsonOpt, OverwriteOpt, UsageError, console, out

DbOpt = Annotated[str, typer.Option("--db", help="database URL: sqlite:///alerts.db (a file, no server) "
                                    "or postgresql+psycopg://user@host/db", envvar="AEDETECT_REVIEW_DB")]


def open_store(url: str, migrate: bool = True):
    """The review store at `url` (brought to the head revision), with a clear error when the
    `review` extra is not installed."""
    try:
        from aedetect.review.store import AlertStore
    except ModuleNotFoundError as exc:
        raise UsageError(f"the review store needs the review extra ({exc.name} is missing): "
                         "pip install 'aedetect[review]'") from None
    return AlertStore(url, migrate=migrate)


def read_verdicts(labels_file: Path | None, labels_db: str | None):
    """The labels of `--labels FILE` (an `alerts export` CSV) or `--labels-db URL` (the review
    store, read as it is: not migrated, a SQLite file not created), and where they came from;
    None without either."""
    if labels_file is not None and labels_db is not None:
        raise UsageError("--labels and --labels-db both give the labels; pass one")
    if labels_file is not None:
        from aedetect.data.labels import read_labels

        return read_labels(labels_file), str(labels_file)
    if labels_db is None:
        return None
    store = open_existing_store(labels_db, "--labels-db")
    return store.labels(), store.display_url


def open_existing_store(url: str, option: str):
    """The review store at `url` read as it is: not migrated, and a SQLite file that is not
    there is an error naming `option`, never created empty."""
    import re

    sqlite = re.match(r"sqlite(\+\w+)?:///(.+)", url)
    path = sqlite.group(2).split("?")[0] if sqlite else None
    if path and path != ":memory:" and not Path(path).expanduser().is_file():
        raise UsageError(f"{option} {url}: no such database file {path}")
    return open_store(url, migrate=False)


def review(
    ctx: typer.Context,
    db: DbOpt = "sqlite:///alerts.db",
    host: str = "127.0.0.1",
    port: int = 8080,
    secure_cookies: Annotated[bool, typer.Option(
        help="mark the session cookie Secure (when the app is served behind HTTPS)")] = False,
):
    """Start the review app: the queue, alert pages, the dashboard and the JSON API on /api.

    Add a user first: AEDETECT_PASSWORD=... aedetect review users add NAME --role analyst"""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from aedetect.review.app import create_review_app

    store = open_store(db)
    if not store.users():
        console.print("[yellow]warning: the store has no user yet; add one with `AEDETECT_PASSWORD=... "
                      f"aedetect review users add NAME --role lead --db {escape(db)}`[/yellow]")
    app = create_review_app(store, secure_cookies=secure_cookies)
    console.print(f"review app for {escape(store.display_url)} on http://{host}:{port} (log in at /login)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def users_add(
    name: Annotated[str, typer.Argument(help="the user's login name")],
    role: Annotated[str, typer.Option(help="analyst (decides own claims), lead (also reassigns and "
                                      "reopens) or admin")] = "analyst",
    db: DbOpt = "sqlite:///alerts.db",
):
    """Add a user. The password is read from AEDETECT_PASSWORD (never from the command line);
    the last line printed is the user's API token (Authorization: Bearer TOKEN), shown once."""
    password = os.environ.get("AEDETECT_PASSWORD")
    if not password:
        raise UsageError("set AEDETECT_PASSWORD to the new user's password (at least 8 characters)")
    token = open_store(db).add_user(name, role, password)
    console.print(f"added {escape(name)} ({role}); API token:")
    print(token)


def users_list(db: DbOpt = "sqlite:///alerts.db"):
    """List the users and their roles."""
    from rich.table import Table

    table = Table("name", "role", "active")
    for u in open_store(db).users():
        table.add_row(u["name"], u["role"], "yes" if u["active"] else "no")
    out.print(table)


def migrate(
    db: DbOpt = "sqlite:///alerts.db",
    revision: Annotated[str, typer.Option(help="Alembic revision to go to")] = "head",
):
    """Create the review store or bring it to the latest schema (Alembic migrations)."""
    from aedetect.review.store import make_engine, revision_of, upgrade

    engine = make_engine(db)
    before = revision_of(engine)
    upgrade(engine, revision)
    console.print(f"review store at revision {revision_of(engine)} (was {before or 'empty'})")


def alerts_load(
    db: DbOpt,
    scored: Annotated[Path, typer.Option("--scored", help="a scored CSV/Parquet (from `aedetect score "
                                         "--all-columns`, Spark...) or a writer's .jsonl fallback file")],
    model_dir: Annotated[Path | None, typer.Option(
        "--model", help="the model folder that scored it: its name, version, threshold, amount and "
        "entity columns go with the alerts")] = None,
    id_column: Annotated[str | None, typer.Option(
        help="the transaction id column [default: the model's id column, else transaction_id, tx_id or id]")] = None,
    threshold: Annotated[float | None, typer.Option(help="the threshold, without --model")] = None,
    model_id: Annotated[str, typer.Option(help="the model's name, without --model")] = "unknown",
):
    """Load the flagged rows of a scored file as alerts (a transaction already stored stays one alert)."""
    from aedetect.review.alerts import AlertSource, read_alert_file, source_for
    from aedetect.review.writer import read_fallback

    store = open_store(db)
    if scored.suffix == ".jsonl":
        if not scored.is_file():
            raise UsageError(f"{scored}: no such file")
        batches = [read_fallback(scored)]
    else:
        if model_dir is not None:
            from aedetect.serving.runtime import open_scorer

            source = source_for(open_scorer(model_dir), model_dir, id_column, columns=_columns(scored))
        elif threshold is not None:
            source = AlertSource(model_id=model_id, model_version="", threshold=threshold,
                                 id_column=id_column or _default_id(scored))
        else:
            raise UsageError("pass --model (the folder that scored the file) or --threshold")
        batches = read_alert_file(scored, source)
    seen = added = 0
    for alerts in batches:
        seen += len(alerts)
        added += store.add_alerts(alerts)
    console.print(f"{seen:,} flagged row(s) in {escape(str(scored))}: {added:,} new alert(s), "
                  f"{seen - added:,} already in the store")


def _columns(path: Path) -> list[str]:
    """The column names of a scored CSV or Parquet file."""
    from aedetect.data.io import check_input_file, table_format

    check_input_file(path)
    if table_format(path) == "parquet":
        import pyarrow.parquet as pq

        return pq.read_schema(path).names
    import pandas as pd

    return list(pd.read_csv(path, nrows=0).columns)


def _default_id(path: Path) -> str | None:
    from aedetect.review.alerts import ID_NAMES

    names = _columns(path)
    return next((c for c in ID_NAMES if c in names), None)


def alerts_export(
    db: DbOpt,
    out_file: Annotated[Path, typer.Option("--out", help="labels CSV: transaction_id, label (1 fraud, "
                                           "0 legit), decided_at, decided_by, model_id")],
    overwrite: OverwriteOpt = False,
):
    """Write the verdicts as labels, for `aedetect train --labels` ("unsure" is left out)."""
    from aedetect.files import check_output, write_text_atomic

    check_output(out_file, overwrite=overwrite, what="labels file")
    labels = open_store(db).labels()
    write_text_atomic(out_file, labels.to_csv(index=False))
    console.print(f"wrote {len(labels):,} label(s) ({int(labels['label'].sum()):,} fraud) to "
                  f"{escape(str(out_file))}")


def alerts_threshold(
    db: DbOpt,
    precision: Annotated[float | None, typer.Option(
        help="the share of fraud wanted among the alerts (of the reviewed ones above the threshold)")] = None,
    per_day: Annotated[float | None, typer.Option(
        "--alerts-per-day", help="the review budget: at most this many alerts a day")] = None,
    model_id: Annotated[str | None, typer.Option(
        help="the model whose alerts to read (its folder name, as the alerts hold it); needed when the "
        "store holds alerts of several")] = None,
    half_width: Annotated[float, typer.Option(
        help="the precision interval's half-width to count the verdicts still needed for")] = 0.05,
    as_json: JsonOpt = False,
):
    """The threshold for a precision or a daily review budget, from the verdicts in the store.

    Prints the threshold (a row is flagged when its score is over it), the alerts it keeps per
    day, the precision of the reviewed alerts above it with its exact 95% interval, and how many
    more verdicts would narrow that interval to +- --half-width. Alerts exist only above the
    model's threshold, so the verdicts can raise it, never lower it.
    """
    import json

    from aedetect.review.thresholds import advise

    if (precision is None) == (per_day is None):
        raise UsageError("give one of --precision and --alerts-per-day")
    alerts = open_existing_store(db, "--db").scored_alerts(model_id)
    models = sorted(set(alerts["model_id"]))
    if model_id is None and len(models) > 1:
        raise UsageError(f"the store holds alerts of {len(models)} models ({', '.join(models[:5])}); "
                         "choose one with --model-id")
    a = advise(alerts, precision=precision, per_day=per_day, half_width=half_width)
    if as_json:
        print(json.dumps(a.as_dict(), indent=2))
        return
    p = a.precision
    out.print(f"threshold {a.threshold:.6g} ({a.rule}): {a.alerts_above:,} alerts at or above, "
              f"{a.alerts_per_day:.1f} a day (over {a.days:.1f} days, from {a.days_from})")
    if p is not None:
        out.print(f"precision of the {a.reviewed_above:,} reviewed: {p['value']:.3f} "
                  f"(95% interval {p['low']:.3f}-{p['high']:.3f}); {a.more_verdicts:,} more verdicts "
                  f"for +- {a.half_width:g}")
    else:
        out.print(f"none of them reviewed yet; about {a.more_verdicts:,} verdicts for +- {a.half_width:g}")
    for note in a.notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}")
