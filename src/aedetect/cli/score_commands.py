"""`aedetect score`, `serve`, `spark score`, `monitor` and `export`: a trained model at work."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from aedetect.cli.common import (
    JsonOpt,
    LabelsDbOpt,
    LabelsIdOpt,
    OverwriteOpt,
    UsageError,
    console,
    load_model,
    make_settings,
    need_tensorflow_to_score,
    out,
    scoring_model,
)
from aedetect.errors import AedetectError


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
    fail_on_drift: Annotated[bool, typer.Option(
        "--fail-on-drift", help="exit with status 3 (the output is still written) when the flagged "
        "share is over 10 times the share the model promises")] = False,
    alerts: Annotated[str | None, typer.Option(
        help="review store URL (sqlite:///alerts.db, postgresql+psycopg://...): every flagged row "
        "becomes an alert there, with all its columns; the id is the first --id-columns")] = None,
    labels_file: Annotated[Path | None, typer.Option(
        "--labels", help="a label-aware model with entity history: verdicts (`aedetect alerts export`: "
        "transaction_id, label) its label-based risk counts from the label delay on, joined to --data "
        "by transaction id; a verdict overrides the file's label column")] = None,
    labels_db: LabelsDbOpt = None,
    labels_id_column: LabelsIdOpt = None,
    history_state: Annotated[Path | None, typer.Option(
        help="a model with entity history: Parquet file of the history to continue from (the model's "
        "own when the file does not exist yet), rewritten with the history after --data, so that files "
        "scored one after another each continue from the one before (the service's --history-state "
        "file reads the same)")] = None,
    overwrite: OverwriteOpt = False,
):
    """Score a file of any size in chunks: row, ids, score, flag and top features per row.

    A flagged share over 10 times the model's promise (its reference.json, else its threshold
    rule's own share) is warned about, naming the columns behind the flagged rows; with
    --fail-on-drift it is exit status 3."""
    from aedetect.cli.ui import ScoringProgress
    from aedetect.files import check_output
    from aedetect.serving.batch import bad_rows_path, score_file

    if on_bad_rows not in ("error", "skip"):
        raise UsageError(f"--on-bad-rows must be 'error' or 'skip'; got {on_bad_rows!r}")
    if chunk_rows < 1 or top_k < 0:
        raise UsageError(f"--chunk-rows must be >= 1 and --top-k >= 0; got {chunk_rows}, {top_k}")
    check_output(out_file, inputs=[data], folders=[model_dir], overwrite=overwrite)  # fast, before the model loads
    if on_bad_rows == "skip":  # the bad rows' file is written only then
        check_output(bad_rows_path(out_file), inputs=[data], folders=[model_dir], overwrite=overwrite,
                     what="bad-rows file")
    if labels_id_column is not None and labels_file is None and labels_db is None:
        raise UsageError("--labels-id-column names the id column for --labels or --labels-db")
    from aedetect.cli.review_commands import read_verdicts
    from aedetect.store.folder import open_folder

    if history_state is not None and history_state.resolve() in (data.resolve(), out_file.resolve()):
        raise UsageError(f"--history-state {history_state} is also --data or --out; give it a file of its own")
    verdicts = read_verdicts(labels_file, labels_db)  # before the model loads
    folder = open_folder(model_dir)
    det = scoring_model(folder)
    carried, carried_from = carried_history(det, model_dir, history_state)
    from aedetect.monitoring.reference import load_reference

    reference = load_reference(folder)
    ids = [c.strip() for c in id_columns.split(",") if c.strip()]
    to_store = _alert_sink(alerts, det, model_dir, ids) if alerts else None
    try:
        with ScoringProgress(console) as progress:
            s = score_file(det, data, out_file, id_columns=ids, all_columns=all_columns, top_k=top_k,
                           chunk_rows=chunk_rows, on_bad_rows=on_bad_rows, progress=progress,
                           reference=reference, on_flagged=to_store,
                           verdicts=verdicts[0] if verdicts is not None else None,
                           verdicts_id_column=labels_id_column, history_state=carried,
                           history_source=carried_from)
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
    if to_store is not None:
        console.print(f"alerts: {to_store.added:,} new in {escape(to_store.store.display_url)}, "
                      f"{to_store.seen - to_store.added:,} already there")
    if s.verdicts is not None:
        found, given, by = s.verdicts
        line = f"verdicts: {found:,} row(s) of the file given one of the {given:,}, by column {by!r}"
        console.print(line if found else f"[yellow]warning: {escape(line)}: none matched[/yellow]", highlight=False)
    if s.labels_warning is not None:
        console.print(f"[yellow]warning: {escape(s.labels_warning)}[/yellow]", highlight=False)
    if s.history_warning is not None:
        console.print(f"[yellow]warning: {escape(s.history_warning)}[/yellow]", highlight=False)
    if history_state is not None:
        import numpy as np

        from aedetect.data.history import state_times
        from aedetect.files import atomic_file

        ends = [np.nanmax(state_times(x), initial=-np.inf) for x in (carried, s.history_state) if x is not None]
        if len(ends) == 2 and ends[1] < ends[0]:  # an earlier file: the history written back ends with it
            console.print(f"[yellow]warning: {escape(str(data))} ends before the history in "
                          f"{escape(str(history_state))} did; the history written back ends with this file, so "
                          "the rows after it are no longer in it (score the later files again to restore "
                          "them)[/yellow]", highlight=False)
        with atomic_file(history_state) as tmp:
            s.history_state.to_parquet(tmp)
        console.print(f"history: continued from {escape(carried_from)}; the history after "
                      f"{escape(str(data))} ({len(s.history_state.rows):,} rows) written to "
                      f"{escape(str(history_state))}", highlight=False)
    if s.share_warning is not None:
        console.print(f"[yellow]warning: {escape(s.share_warning)}[/yellow]", highlight=False)
        if fail_on_drift:
            raise typer.Exit(3)


def carried_history(det, model_dir: Path, path: Path | None) -> tuple[object, str]:
    """`--history-state`: the `HistoryState` in `path` when it exists (else None: the model's
    own) and what it is, in words; refused for a model without entity history."""
    if path is None:
        return None, "the model's training data"
    schema = det.dataset_schema if getattr(det, "schema", None) is not None else None
    if schema is None or schema.history is None:
        raise UsageError(f"--history-state: {model_dir} has no entity history (train it with --entity-columns)")
    if not path.exists():
        return None, "the model's training data"
    from aedetect.data.history import read_state

    return read_state(path, schema.history.entities), str(path)


class _AlertSink:
    """`score_file`'s on_flagged for `--alerts`: each chunk's flagged rows written as alerts."""

    def __init__(self, store, source):
        self.store, self.source, self.seen, self.added = store, source, 0, 0

    def __call__(self, frame) -> None:
        from aedetect.review.alerts import alerts_from_table

        alerts = alerts_from_table(frame, self.source)
        self.seen += len(alerts)
        self.added += self.store.add_alerts(alerts)


def _alert_sink(url: str, det, model_dir: Path, ids: list[str]) -> _AlertSink:
    from aedetect.cli.review_commands import open_store
    from aedetect.review.alerts import source_for

    source = source_for(det, model_dir, ids[0] if ids else None)
    if source.id_column is None:
        raise UsageError("--alerts needs a transaction id: name its column first in --id-columns")
    return _AlertSink(open_store(url), source)


def listening_socket(host: str, port: int):
    """A bound TCP socket for the service, made as getaddrinfo describes it: with its protocol
    IPPROTO_TCP, so that asyncio turns Nagle's algorithm off on every connection it accepts (it
    does so only for sockets whose protocol says TCP). Made with protocol 0, a keep-alive client
    waited about 40 ms per request: a response's second small write held back until the
    client's delayed ACK of the first."""
    import socket

    try:
        family, kind, proto, _, _ = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except (OSError, OverflowError) as exc:
        raise AedetectError(f"cannot listen on {host}:{port}: {getattr(exc, 'strerror', None) or exc}") from None
    return sock


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
    history_state: Annotated[Path | None, typer.Option(
        help="Parquet file keeping the entity history of a model with history features across "
             "restarts: read at start when present, saved periodically and on shutdown")] = None,
    history_save_every: Annotated[float, typer.Option(
        help="seconds between saves of --history-state")] = 60.0,
    alerts: Annotated[str | None, typer.Option(
        help="review store URL (sqlite:///alerts.db, postgresql+psycopg://...): flagged "
        "transactions of /v1/score become alerts, written in the background (counted in /metrics)")] = None,
    workers: Annotated[int | None, typer.Option(
        min=1, help="server processes answering on the port [default: one per core, at most 4; one "
        "for a model with entity history, whose state lives in the process]. /metrics sums the "
        "workers' counts; /v1/drift is the answering worker's own window")] = None,
):
    """Serve the model over HTTP: POST /v1/score, /v2 (KServe), GET /healthz, /v1/model, /v1/drift, /metrics.

    POST /v1/score takes {"transactions": [...]}, 1 to --max-batch of them: each has the model's
    input columns as fields (numbers as numbers, categories as text, datetimes as text in the
    training data's format or seconds since 1970, null where the model reads gaps) and an
    optional "id", echoed back. GET /v1/model lists the columns; with the API key set, send it
    as X-API-Key. For a model of the credit-card data ("..." stands for V2 to V27):

    \b
      curl -s localhost:8000/v1/score -H 'content-type: application/json' \\
        -d '{"transactions": [{"id": "tx-1", "Time": 406, "V1": -2.31, ...,
                               "V28": -0.14, "Amount": 0.0}]}'
      {"threshold": 1124.0, "results": [{"id": "tx-1", "score": 432.3,
       "flag": false, "top_features": [{"feature": "V14", ...}, ...]}]}

    (numbers for illustration). docs/serving.md has the whole body, and one for a table of your
    own, with categories, a date and a gap.
    """

    import uvicorn

    from aedetect.serving.app import ServiceSettings, create_app, settle_heap

    settings = make_settings(ServiceSettings, max_batch=max_batch, max_body_bytes=max_body_bytes,
                         api_key_env=api_key_env, top_k=top_k, public_docs=public_docs,
                         max_concurrent=max_concurrent, max_queue=max_queue,
                         queue_timeout_s=queue_timeout, drift_window=drift_window,
                         history_state=None if history_state is None else str(history_state),
                         history_save_s=history_save_every, alerts=alerts)
    from aedetect.store.folder import open_folder

    folder = open_folder(model_dir)
    sock = listening_socket(host, port)  # bound before the model loads and before saying "serving"
    need_tensorflow_to_score(folder)
    api = create_app(folder, settings)  # loads no TensorFlow (see need_tensorflow_to_score); checks it all
    auth = "on" if api.state.api_key else f"off (set {api_key_env} to turn it on)"
    stateful = api.state.history is not None
    if workers is not None and workers > 1 and stateful:
        raise UsageError(f"--workers {workers}: this model computes entity history, whose state lives in "
                         "the serving process; serve it with --workers 1 (docs/history.md)")
    from aedetect.serving.runtime import usable_cores

    n = workers or (1 if stateful else min(usable_cores(), 4))
    console.print(f"serving {escape(str(model_dir))} on http://{host}:{sock.getsockname()[1]} "
                  f"(API-key auth {auth}; {n} worker{'s' if n > 1 else ''})")
    # The app's gate (slots and queue) is the one refusal: 503 with Retry-After. uvicorn's own
    # limit_concurrency counts open connections, so 30 keep-alive clients, idle or not, would get
    # its plain 503 on every request.
    if n == 1:
        settle_heap()
        uvicorn.Server(uvicorn.Config(api, log_level="warning")).run(sockets=[sock])
    else:
        if api.state.alerts is not None:  # each worker writes its own alerts
            api.state.alerts.close()
        del api  # each worker builds its own from the same folder and settings
        _serve_workers(folder.path, settings, sock, n)


def _serve_workers(model: Path, settings, sock, n: int) -> None:
    """`n` uvicorn worker processes on the bound socket `sock`, each with its own app
    (`serving.app.app_from_env`); their counters meet in a folder (Prometheus' multiprocess
    mode): PROMETHEUS_MULTIPROC_DIR when set, else one of their own, removed when they stop."""
    import json
    import shutil
    import tempfile

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from aedetect.serving.app import SERVE_ENV

    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")  # the user's folder: used, and kept
    shared = given or tempfile.mkdtemp(prefix="aedetect-metrics-")
    os.environ[SERVE_ENV] = json.dumps({"model": str(model), "settings": settings.model_dump()})
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared
    try:
        config = uvicorn.Config("aedetect.serving.app:app_from_env", factory=True, workers=n, log_level="warning")
        Multiprocess(config, sockets=[sock]).run()
    finally:
        if not given:
            shutil.rmtree(shared, ignore_errors=True)


def spark_score(
    model_dir: Annotated[Path, typer.Option("--model", help="model folder")],
    data: Annotated[str, typer.Option("--data", help="Parquet file or folder (any path Spark reads)")],
    out_dir: Annotated[str, typer.Option("--out", help="Parquet folder to write")],
    master: Annotated[str | None, typer.Option(help="classic Spark master, e.g. local[2] or "
                                               "yarn [default: local[*]]")] = None,
    remote: Annotated[str | None, typer.Option(help="Spark Connect URL, e.g. sc://host:15002")] = None,
    id_columns: Annotated[str, typer.Option(help="comma-separated columns to copy to the output")] = "",
    top_k: Annotated[int, typer.Option(help="top contributing features per row")] = 3,
    history_state: Annotated[Path | None, typer.Option(
        help="a model with entity history: Parquet file of the history to continue from, as `aedetect "
        "score --history-state` writes it (read, never written here) [default: the model's own]")] = None,
    overwrite: OverwriteOpt = False,
):
    """Score Parquet on Spark and write Parquet: ids, score, flag, top features, reason."""
    from aedetect.serving.spark import score_parquet, session
    from aedetect.store.folder import read_manifest

    if top_k < 0:
        raise UsageError(f"--top-k must be >= 0; got {top_k}")
    if master and remote:
        raise UsageError("give --master or --remote, not both")
    read_manifest(model_dir)  # a bad folder fails before a Spark session starts
    if history_state is not None and not history_state.is_file():
        raise UsageError(f"--history-state {history_state}: no such file (`aedetect score --history-state` "
                         "writes it)")
    local = "://" not in out_dir
    if local:  # Spark's overwrite mode deletes the whole folder: only one aedetect wrote
        from aedetect.files import check_output

        check_output(out_dir, inputs=[data] if "://" not in data else [], folders=[model_dir],
                     overwrite=overwrite, folder=True, what="Parquet folder")
    ids = [c.strip() for c in id_columns.split(",") if c.strip()]
    with console.status("starting Spark"):
        spark = session(master, remote)
    with console.status(f"scoring {data} on Spark"):
        s = score_parquet(spark, model_dir, data, out_dir, id_columns=ids, top_k=top_k,
                          overwrite=overwrite, history_state=history_state)
    if local:
        from aedetect.files import mark_folder

        mark_folder(out_dir)  # aedetect's: a later --overwrite may replace it
    console.print(f"scored {s['rows'] - s['unscored']:,} of {s['rows']:,} rows, flagged "
                  f"{s['flagged']:,}; {s['unscored']:,} row(s) could not be scored (see the "
                  f"reason column); wrote {out_dir}")



def _print_verdicts(summary: dict, source: str, label_column: str | None) -> None:
    """What the verdicts gave, under the table: reviewed rows, and why there is no recall (or,
    when the file has labels, that the table's precision and recall are theirs)."""
    from aedetect.monitoring.batch import RECALL_FROM_VERDICTS, verdicts_only

    windows = [w["verdicts"] for w in summary["windows"]]
    reviewed, fraud = sum(v["reviewed"] for v in windows), sum(v["fraud"] for v in windows)
    flagged = sum(v["flagged"] for v in windows)
    console.print(f"verdicts from {escape(source)} by {escape(repr(summary['verdicts_by']))}: {reviewed:,} of "
                  f"{flagged:,} flagged row(s) reviewed, {fraud:,} fraud", highlight=False)
    if verdicts_only(summary):
        console.print(f"recall from verdicts: {RECALL_FROM_VERDICTS}", highlight=False)
    else:
        console.print(f"the file has labels ({escape(repr(label_column))}): the table's precision and recall "
                      "are theirs; each window's precision from the verdicts is in drift.json ('verdicts')",
                      highlight=False)


def monitor(
    model_dir: Annotated[Path, typer.Option("--model", help="model folder")],
    data: Annotated[Path, typer.Option("--data", help="CSV/Parquet file of new rows")],
    window: Annotated[str | None, typer.Option(
        help="cut the rows into windows of this length of --time-column, e.g. 4h, 1d, 30m; "
        "default: one batch")] = None,
    time_column: Annotated[str | None, typer.Option(
        help="seconds (like the ULB Time) or dates [default: the model's time column]")] = None,
    label_column: Annotated[str | None, typer.Option(
        help="0/1 labels, used for precision and recall when the file has them [default: the "
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
    min_rows: Annotated[int, typer.Option(
        help="a window with fewer scored rows is reported but never alarms")] = 100,
    labels_file: Annotated[Path | None, typer.Option(
        "--labels", help="verdicts of reviewed alerts (`aedetect alerts export`: transaction_id, label "
        "1 fraud / 0 legit): each window's precision among its flagged rows that were reviewed, "
        "fraud / (fraud + legit), shown when the file has no label column (drift.json has it "
        "always); no recall: rows that were not flagged are never reviewed")] = None,
    labels_db: LabelsDbOpt = None,
    id_column: Annotated[str | None, typer.Option(
        help="the transaction id column, for --labels [default: transaction_id, else the model's "
        "id column]")] = None,
    history_state: Annotated[Path | None, typer.Option(
        help="a model with entity history: Parquet file of the history to continue from, as `aedetect "
        "score --history-state` writes it (read, never written here) [default: the model's own]")] = None,
    overwrite: OverwriteOpt = False,
):
    """Compare new rows (per time window) with the model's reference: column and score drift,
    flagged share against the promise, precision and recall.

    Rows are scored as `aedetect score`
    scores them; one that cannot be is counted, and a window where more than half cannot is not
    judged. Exit code 3 when an alarm fires, 4 when no alarm fires but a window was not judged.
    With --labels-db (or --labels) and a file without labels: the precision of the flagged rows
    that were reviewed."""
    from aedetect.data.io import read_raw
    from aedetect.monitoring.batch import monitor_frame, parse_window, rich_table, write_outputs
    from aedetect.monitoring.reference import DriftSettings, load_reference
    from aedetect.store.folder import open_folder

    settings = make_settings(DriftSettings, alpha=alpha, psi_alarm=psi_alarm, share_ratio=share_ratio)
    if min_rows < 1:
        raise UsageError(f"--min-rows must be >= 1; got {min_rows}")
    from aedetect.files import check_output

    reads = dict(inputs=[data, reference, labels_file], folders=[model_dir], overwrite=overwrite)
    if json_out is not None:
        check_output(json_out, **reads, what="drift file")
    if report_dir is not None:
        check_output(report_dir, **reads, folder=True, what="report", option="--report")
    try:
        seconds = parse_window(window) if window else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if id_column is not None and labels_file is None and labels_db is None:
        raise UsageError("--id-column names the transaction id column for --labels or --labels-db")
    from aedetect.cli.review_commands import read_verdicts

    verdicts = read_verdicts(labels_file, labels_db)
    ref = load_reference(model_dir)
    if ref is None and reference is None:
        raise UsageError(f"{model_dir} has no reference.json (trained before drift monitoring); "
                            "pass --reference DATA to take one from a file of rows like the training data")
    folder = open_folder(model_dir)
    det = scoring_model(folder)  # scored as `aedetect score` scores
    if history_state is not None and not history_state.exists():
        raise UsageError(f"--history-state {history_state}: no such file (monitor reads it; `aedetect score "
                         "--history-state` writes it)")
    carried, carried_from = carried_history(det, model_dir, history_state)
    schema = det.dataset_schema
    df = read_raw(data, schema)  # categories, booleans and dates as text, as `score` reads them
    ref_df = read_raw(reference, schema) if reference is not None else None
    time_column = time_column or schema.time
    label_column = label_column or schema.label
    if ref_df is not None:
        from aedetect.monitoring.reference import reference_from_frame

        ref = reference_from_frame(det, ref_df, label_column, source=str(reference),
                                   time_column=time_column if time_column in ref_df.columns else None)
    with console.status("scoring and comparing"):
        run = monitor_frame(det, ref, df, window=seconds, time_column=time_column,
                            label_column=label_column, settings=settings, source=str(data),
                            min_rows=min_rows, labels=verdicts[0] if verdicts else None,
                            id_column=id_column, history_state=carried, history_source=carried_from)
    if as_json:
        import json

        print(json.dumps(run.summary, indent=2))
    else:
        out.print(rich_table(run.summary))
        if verdicts is not None:
            _print_verdicts(run.summary, verdicts[1], label_column)
        for line in run.summary["hint"]:
            console.print(f"[yellow]{line}[/yellow]", highlight=False)
    unscored = run.summary["unscored"]
    if unscored["rows"]:
        first = unscored["first"][0]
        console.print(f"{unscored['rows']:,} of {run.summary['rows']:,} rows could not be scored "
                      f"and are not compared (drift.json names the first five); the first, row {first['row']}: "
                      f"{escape(first['reason'])}", highlight=False)
    if json_out is not None:
        from aedetect.cli.ui import write_json

        write_json(run.summary, json_out)
    if report_dir is not None:
        with console.status("drawing the report"):
            path = write_outputs(run, ref, report_dir, f"aedetect drift: {data}", overwrite=overwrite)
        console.print(f"report written to {path}")
    if run.alarm:
        n = sum(w["alarm"] for w in run.summary["windows"])
        console.print(f"[bold red]alarm[/bold red] in {n} of {len(run.summary['windows'])} window(s); "
                      f"to retrain from this model: aedetect train --warm-start {model_dir} --data NEWER.csv")
        raise typer.Exit(3)
    if run.not_judged:
        console.print(f"[yellow]not judged[/yellow]: {run.not_judged} of {len(run.summary['windows'])} "
                      "window(s), where more than half the rows could not be scored")
        raise typer.Exit(4)


def export(
    model_dir: Annotated[Path, typer.Option("--model", help="model folder")],
    out_dir: Annotated[Path, typer.Option("--out", help="SavedModel folder, or .onnx file, to write")],
    fmt: Annotated[str, typer.Option("--format", help="'savedmodel' (TF Serving) or 'onnx'")] = "savedmodel",
    overwrite: OverwriteOpt = False,
):
    """Export a SavedModel or an ONNX model that takes raw columns and returns score and flag."""
    if fmt not in ("savedmodel", "onnx"):
        raise UsageError(f"--format must be 'savedmodel' or 'onnx'; got {fmt!r}")
    from aedetect.store.folder import open_folder

    folder = open_folder(model_dir)
    from aedetect.files import check_output

    check_output(out_dir, folders=[model_dir], overwrite=overwrite, folder=fmt == "savedmodel",
                 what="export")
    if fmt == "onnx":
        from aedetect.serving.export import export_onnx
        from aedetect.serving.runtime import load_scorer

        try:
            import onnx  # noqa: F401
        except ModuleNotFoundError:
            raise AedetectError("--format onnx needs the onnx package: pip install 'aedetect[onnx]'") from None
        if folder.is_hybrid:  # the head over the NumPy runtime (an old head on Keras' code: refused)
            from aedetect.serving.runtime import open_scorer

            det = open_scorer(folder)
        else:
            det = load_scorer(folder)  # the ONNX graph is built from the NumPy weights: no TensorFlow
        export_onnx(det, out_dir, overwrite=overwrite)
        what = "ONNX model"
    else:
        det = load_model(folder)  # a label-aware folder: its head over the Keras autoencoder
        from aedetect.serving.export import export_savedmodel

        with console.status("writing SavedModel"):
            export_savedmodel(det, out_dir, overwrite=overwrite)
        what = "SavedModel (signature 'serving_default')"
    if getattr(det, "head_", None) is not None:
        what += " (the label-aware mode: 'score' is the fraud probability)"
    from aedetect.serving.export import describe_inputs

    console.print(f"{what} written to {escape(str(out_dir))}; inputs: {escape(describe_inputs(det))}; "
                  "outputs: 'score' (float64), 'flag' (int32)", highlight=False)
