"""The service's alert writer: flagged transactions are handed to a bounded queue and written to
the review store by one background thread, in batches, so that an answer never waits for the
database. A failed write is retried (the rows stay queued); a clean shutdown writes everything
still queued, and rows the database would not take by then are saved to a JSON-lines file that
`aedetect alerts load` reads."""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from pathlib import Path

from aedetect.errors import AedetectError


class AlertWriter:
    """Write alerts to `store` in the background. `put` never blocks while fewer than
    `max_pending` alerts wait; beyond that it waits up to `put_timeout` seconds for room (the
    database is far behind), and the alerts that still find none are kept aside and written
    with the next batch, never dropped."""

    def __init__(self, store, source=None, *, max_pending: int = 100_000, batch: int = 50, interval_s: float = 0.05,
                 put_timeout: float = 0.05, fallback: str | Path = "alerts-unwritten.jsonl"):
        self.source = source  # the AlertSource its producer builds alerts with
        self.store, self.batch, self.interval_s, self.put_timeout = store, batch, interval_s, put_timeout
        self.fallback = Path(fallback)
        self.queue: queue.Queue = queue.Queue(max_pending)
        self.overflow: list[dict] = []  # alerts that found the queue full; written first
        self.lock = threading.Lock()
        self.written = self.duplicates = self.failures = self.full = 0
        self.last_error: str | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="aedetect-alert-writer", daemon=True)
        self.thread.start()

    @property
    def pending(self) -> int:
        return self.queue.qsize() + len(self.overflow)

    def put(self, alerts: list) -> None:
        """Queue alerts: dicts of the store's columns, or (transaction, score, reasons, id,
        history) tuples that the writer's thread turns into alerts with `source` (so that the
        answering thread does not)."""
        for a in alerts:
            try:
                self.queue.put(a, timeout=self.put_timeout)
            except queue.Full:
                with self.lock:
                    self.full += 1
                    self.overflow.append(a)

    def _take(self) -> list[dict]:
        with self.lock:
            rows, self.overflow = self.overflow[:self.batch], self.overflow[self.batch:]
        while len(rows) < self.batch:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            rows.append(self.source.alert(*item) if isinstance(item, tuple) else item)
        return rows

    def _write(self, rows: list[dict]) -> bool:
        try:
            added = self.store.add_alerts(rows)
        except Exception as exc:  # noqa: BLE001 - the database is down or refused: keep the rows, retry
            self.failures += 1
            self.last_error = str(exc).splitlines()[0][:300]
            with self.lock:
                self.overflow[:0] = rows
            return False
        self.written += added
        self.duplicates += len(rows) - added
        return True

    def _run(self) -> None:
        backoff = self.interval_s
        while not self.stopping.is_set():
            rows = self._take()
            if not rows:
                self.stopping.wait(self.interval_s)
                continue
            if self._write(rows):
                backoff = self.interval_s
            else:
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def close(self, timeout_s: float = 30.0) -> int:
        """Stop, write what is queued (for up to `timeout_s` when the database fails) and save
        what could not be written to the fallback file. Returns the count saved there."""
        self.stopping.set()
        self.thread.join()
        deadline = time.monotonic() + timeout_s
        while self.pending and time.monotonic() < deadline:
            rows = self._take()
            if not self._write(rows):
                time.sleep(0.5)
        left = self._take_all()
        if left:
            with self.fallback.open("a") as f:
                for a in left:
                    f.write(json.dumps(a, default=str) + "\n")
            print(f"warning: {len(left)} alert(s) could not be written to the review store "
                  f"({self.last_error}); saved to {self.fallback} (load them with `aedetect alerts "
                  f"load --db URL --scored {self.fallback}`)", file=sys.stderr, flush=True)
        return len(left)

    def _take_all(self) -> list[dict]:
        out = []
        while rows := self._take():
            out += rows
        return out


def read_fallback(path: str | Path) -> list[dict]:
    """The alerts a writer saved to its fallback file (JSON lines)."""
    out = []
    with Path(path).open() as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise AedetectError(f"{path}: line {n}: not JSON ({exc.msg})") from None
    return out
