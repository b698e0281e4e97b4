"""The alert store: alerts in, claims with a lock, verdicts, users, sessions and the audit log,
through SQLAlchemy 2 on SQLite (default, no server) or PostgreSQL (a team's).

One `AlertStore` per database URL. Every change is one transaction that also appends its audit
entry, committed before the call returns: a verdict that was answered is on disk.

Claims never collide. Taking the next alert is one `UPDATE ... WHERE id = (SELECT ... LIMIT 1
FOR UPDATE SKIP LOCKED) AND status = 'open'`: PostgreSQL skips rows another claim holds;
SQLite runs every transaction as `BEGIN IMMEDIATE`, one writer at a time, which is the same
guarantee for the small teams it serves.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, create_engine, event, func, insert, inspect, select, text, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session as OrmSession

from aedetect.errors import AedetectError
from aedetect.review.tables import (
    ROLES,
    STATUSES,
    VERDICTS,
    Alert,
    AuditEntry,
    Session,
    User,
    Verdict,
    utcnow,
)

MIGRATIONS = Path(__file__).with_name("migrations")
HEAD = "0003"
SESSION_HOURS = 12
INSERT_COLUMNS = ("transaction_id", "transaction", "score", "threshold", "amount", "priority", "model_id",
                  "model_version", "reasons", "top_reason", "entity", "history", "event_time", "created_at")
JSON_COLUMNS = ("transaction", "reasons", "history")
ORDERS = ("score", "value")  # the queue's orders: by score, or by score x amount


class ReviewError(AedetectError):
    """A refused review action; `status` is the HTTP status the app answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Reviewer:
    id: int
    name: str
    role: str

    @property
    def is_lead(self) -> bool:
        return self.role in ("lead", "admin")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def jsonable(value: Any) -> Any:
    """A value as JSON keeps it: NaN and missing values become null, times ISO text, NumPy
    scalars Python ones."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if hasattr(value, "item") and not isinstance(value, (list, dict)):  # NumPy / Arrow scalars
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, int):
        return value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    try:
        import pandas as pd

        if pd.isna(value):
            return None
        if isinstance(value, pd.Timestamp):
            return value.isoformat()
    except (TypeError, ValueError, ImportError):
        pass
    return str(value)


def _sqlite_setup(engine: Engine) -> None:
    """SQLite: WAL, foreign keys, a 30 s busy wait and BEGIN IMMEDIATE on every transaction,
    so that two writers queue up instead of failing half-way."""

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" below opens transactions
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """An engine for `url`, with a clear error for a URL SQLAlchemy cannot use."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise AedetectError(f"not a database URL: {url!r}; use e.g. sqlite:///alerts.db or "
                            "postgresql+psycopg://user@host/db") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise AedetectError(f"database {backend!r} in {url!r} is not supported; use sqlite or postgresql")
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            folder = Path(parsed.database).expanduser().resolve().parent
            if not folder.is_dir():
                raise AedetectError(f"the folder of {parsed.database} does not exist")
        engine = create_engine(parsed, connect_args={"timeout": 30, "check_same_thread": False})
        _sqlite_setup(engine)
        return engine
    try:
        return create_engine(parsed, pool_size=10, max_overflow=20, pool_pre_ping=True)
    except ModuleNotFoundError:
        raise AedetectError("PostgreSQL needs psycopg: pip install 'aedetect[postgres]'") from None


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to `revision` with the Alembic migrations (creates it when empty)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def revision_of(engine: Engine) -> str | None:
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def alert_dict(a: Alert, assignee: str | None = None, full: bool = True) -> dict:
    out = {"id": a.id, "transaction_id": a.transaction_id, "score": a.score, "threshold": a.threshold,
           "amount": a.amount, "status": a.status, "assignee": assignee, "verdict": a.verdict,
           "model_id": a.model_id, "model_version": a.model_version, "top_reason": a.top_reason,
           "entity": a.entity, "created_at": _iso(a.created_at), "claimed_at": _iso(a.claimed_at),
           "decided_at": _iso(a.decided_at)}
    if full:
        out.update(transaction=a.transaction, reasons=a.reasons, history=a.history)
    return out


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat(timespec="seconds") + "Z"


class AlertStore:
    """The review store at `url`; `migrate` brings an empty or older database to the head
    revision first (the CLI does; the app refuses a database that is not at head)."""

    def __init__(self, url: str, *, migrate: bool = True):
        self.url = url
        self.engine = make_engine(url)
        try:
            if migrate:
                upgrade(self.engine)
            found = revision_of(self.engine)
        except OperationalError as exc:
            raise AedetectError(f"cannot open the review store {self.display_url}: "
                                f"{str(exc.orig).strip().splitlines()[0]}") from None
        if found != HEAD:
            raise AedetectError(f"the review store {self.display_url} is at revision {found}, not "
                                f"{HEAD}; run `aedetect review migrate --db URL`")

    @property
    def display_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self):
        """One ORM session in one transaction, committed on leaving (rolled back on an error)."""
        with OrmSession(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    # -- alerts in ---------------------------------------------------------------------------

    def add_alerts(self, alerts: list[dict]) -> int:
        """Insert alerts (dicts of Alert's columns); a transaction id already stored is kept as it
        is (the same transaction flagged twice is one alert). Returns how many were new.

        One prepared INSERT ... ON CONFLICT DO NOTHING run over the rows by the driver (JSON
        encoded by the json module), then one INSERT ... SELECT of their "created" audit entries:
        little Python per alert, so the service's background writer leaves the answers alone."""
        if not alerts:
            return 0
        now = utcnow()
        rows = [{**a, "event_time": a.get("event_time"), "created_at": now, "transaction": json.dumps(a["transaction"]),
                 "reasons": json.dumps(a["reasons"]), "history": None if a.get("history") is None
                 else json.dumps(a["history"]),
                 "priority": a["score"] * (a["amount"] if a.get("amount") is not None else 1.0)} for a in alerts]
        json_cast = "CAST(:{} AS JSON)" if self.dialect == "postgresql" else ":{}"
        values = ", ".join(json_cast.format(c) if c in JSON_COLUMNS else f":{c}" for c in INSERT_COLUMNS)
        quoted = ", ".join(f'"{c}"' for c in INSERT_COLUMNS)
        with self.transaction() as c:
            c.execute(text(f"INSERT INTO alerts ({quoted}, status) VALUES ({values}, 'open') "
                           "ON CONFLICT (transaction_id) DO NOTHING"), rows)
            added = 0
            for first in range(0, len(rows), 500):  # rows inserted now carry this call's time
                ids = [r["transaction_id"] for r in rows[first:first + 500]]
                added += c.execute(text(
                    "INSERT INTO audit (at, user_id, alert_id, action, before, after) "
                    f"SELECT :at, NULL, id, 'created', NULL, {json_cast.format('after')} FROM alerts "
                    "WHERE created_at = :at AND transaction_id IN :ids").bindparams(
                        bindparam("ids", expanding=True)),
                    {"at": now, "after": '{"status": "open"}', "ids": ids}).rowcount
        return added

    # -- reading ------------------------------------------------------------------------------

    def _filters(self, status=None, model=None, since=None, until=None, reason=None) -> list:
        where = []
        if status:
            if status not in STATUSES:
                raise ReviewError(f"status must be one of {', '.join(STATUSES)}; got {status!r}")
            where.append(Alert.status == status)
        if model:
            where.append(Alert.model_id == model)
        if since is not None:
            where.append(Alert.created_at >= since)
        if until is not None:
            where.append(Alert.created_at < until)
        if reason:
            where.append(Alert.top_reason == reason)
        return where

    @staticmethod
    def _order(order: str):
        if order not in ORDERS:
            raise ReviewError(f"order must be one of {', '.join(ORDERS)}; got {order!r}")
        return (Alert.priority.desc() if order == "value" else Alert.score.desc()), Alert.id

    def list_alerts(self, *, status=None, model=None, since=None, until=None, reason=None,
                    order: str = "score", limit: int = 50, offset: int = 0,
                    count_cap: int | None = None) -> tuple[list[dict], int]:
        """One page of alerts in `order` and how many match. With `count_cap`, counting stops
        past that many (the count is then `count_cap + 1`: a page shows "10,000+"), so that a
        page over a million alerts does not wait on a full count."""
        where = self._filters(status, model, since, until, reason)
        limit = max(0, min(int(limit), 1000))
        with self.transaction() as c:
            total = self._count(c, where, count_cap)
            rows = c.execute(select(Alert, User.name).outerjoin(User, Alert.assignee_id == User.id)
                             .where(*where).order_by(*self._order(order)).limit(limit).offset(offset)).all()
        return [alert_dict(a, n, full=False) for a, n in rows], total

    @staticmethod
    def _count(c, where: list, cap: int | None) -> int:
        matching = select(Alert.id).where(*where)
        if cap is not None:
            matching = matching.limit(cap + 1)
        return c.execute(select(func.count()).select_from(matching.subquery())).scalar_one()

    def counts(self, cap: int | None = None) -> dict[str, int]:
        """Alerts per status (each count stops past `cap` when given, as in `list_alerts`)."""
        with self.transaction() as c:
            if cap is None:
                found = dict(c.execute(select(Alert.status, func.count()).group_by(Alert.status)).all())
            else:
                found = {s: self._count(c, [Alert.status == s], cap) for s in STATUSES}
        return {s: found.get(s, 0) for s in STATUSES}

    def facets(self) -> dict[str, list[str]]:
        """The models and top reasons present, for the queue's filters: each read by walking
        its index from one value to the next (a few lookups, not a scan of every alert)."""
        with self.transaction() as c:
            return {"models": self._distinct(c, "model_id"), "reasons": self._distinct(c, "top_reason")}

    @staticmethod
    def _distinct(c, column: str, most: int = 200) -> list[str]:
        # `column` is one of two names fixed in this module, never user input.
        return list(c.execute(text(
            f"WITH RECURSIVE v(x) AS (SELECT (SELECT min({column}) FROM alerts) UNION ALL "
            f"SELECT (SELECT min({column}) FROM alerts WHERE {column} > v.x) FROM v WHERE v.x IS NOT NULL) "
            "SELECT x FROM v WHERE x IS NOT NULL LIMIT :most"), {"most": most}).scalars())

    def get(self, alert_id: int) -> dict:
        with self.transaction() as c:
            row = c.execute(select(Alert, User.name).outerjoin(User, Alert.assignee_id == User.id)
                            .where(Alert.id == alert_id)).first()
        if row is None:
            raise ReviewError(f"no alert {alert_id}", 404)
        return alert_dict(*row)

    def related(self, alert: dict, limit: int = 20) -> list[dict]:
        """Other alerts on the same entity (card, terminal...), newest first, with verdicts."""
        if not alert.get("entity"):
            return []
        with self.transaction() as c:
            rows = c.execute(select(Alert, User.name).outerjoin(User, Alert.assignee_id == User.id)
                             .where(Alert.entity == alert["entity"], Alert.id != alert["id"])
                             .order_by(Alert.created_at.desc(), Alert.id.desc()).limit(limit)).all()
        return [alert_dict(a, n, full=False) for a, n in rows]

    def verdicts(self, alert_id: int) -> list[dict]:
        with self.transaction() as c:
            rows = c.execute(select(Verdict, User.name).join(User, Verdict.user_id == User.id)
                             .where(Verdict.alert_id == alert_id).order_by(Verdict.id)).all()
        return [{"verdict": v.verdict, "note": v.note, "by": n, "at": _iso(v.decided_at)} for v, n in rows]

    def audit(self, alert_id: int) -> list[dict]:
        self.get(alert_id)  # 404 for an unknown alert
        with self.transaction() as c:
            rows = c.execute(select(AuditEntry, User.name).outerjoin(User, AuditEntry.user_id == User.id)
                             .where(AuditEntry.alert_id == alert_id).order_by(AuditEntry.id)).all()
        return [{"at": _iso(e.at), "who": n or "system", "what": e.action, "before": e.before,
                 "after": e.after} for e, n in rows]

    # -- claims and decisions -----------------------------------------------------------------

    def claim_next(self, user: Reviewer, *, order: str = "score", **filters) -> dict | None:
        """Claim the open alert first in `order` (and `filters`) for `user`; None when none is open."""
        where = [*self._filters(**filters), Alert.status == "open"]
        pick = (select(Alert.id).where(*where).order_by(*self._order(order)).limit(1)
                .with_for_update(skip_locked=True).scalar_subquery())
        now = utcnow()
        with self.transaction() as c:
            got = c.execute(update(Alert).where(Alert.id == pick, Alert.status == "open")
                            .values(status="claimed", assignee_id=user.id, claimed_at=now)
                            .returning(Alert.id)).scalar()
            if got is None:
                return None
            self._log(c, user, got, "claimed", {"status": "open", "assignee": None},
                      {"status": "claimed", "assignee": user.name}, now)
        return self.get(got)

    def claim(self, alert_id: int, user: Reviewer) -> dict:
        now = utcnow()
        with self.transaction() as c:
            a, who = self._locked(c, alert_id)
            if a.status == "claimed" and a.assignee_id == user.id:
                return self.get(alert_id)
            if a.status != "open":
                holder = f" by {who}" if who else ""
                raise ReviewError(f"alert {alert_id} is {a.status}{holder}", 409)
            c.execute(update(Alert).where(Alert.id == alert_id)
                      .values(status="claimed", assignee_id=user.id, claimed_at=now))
            self._log(c, user, alert_id, "claimed", {"status": "open", "assignee": None},
                      {"status": "claimed", "assignee": user.name}, now)
        return self.get(alert_id)

    def decide(self, alert_id: int, user: Reviewer, verdict: str, note: str = "") -> dict:
        """Record `verdict` on the alert: the analyst who holds the claim decides (an open alert is
        claimed and decided at once); a lead or admin may decide any alert that is not decided."""
        if verdict not in VERDICTS:
            raise ReviewError(f"verdict must be one of {', '.join(VERDICTS)}; got {verdict!r}", 422)
        note = (note or "")[:4000]
        now = utcnow()
        with self.transaction() as c:
            a, who = self._locked(c, alert_id)
            if a.status == "decided":
                raise ReviewError(f"alert {alert_id} is already decided ({a.verdict}); a lead can reopen it", 409)
            if a.status == "claimed" and a.assignee_id != user.id and not user.is_lead:
                raise ReviewError(f"alert {alert_id} is claimed by {who}; only they or a lead can decide it", 403)
            before = {"status": a.status, "assignee": who, "verdict": a.verdict}
            c.execute(update(Alert).where(Alert.id == alert_id).values(
                status="decided", verdict=verdict, decided_at=now,
                assignee_id=a.assignee_id if a.assignee_id is not None else user.id,
                claimed_at=a.claimed_at or now))
            c.execute(insert(Verdict).values(alert_id=alert_id, user_id=user.id, verdict=verdict,
                                             note=note, decided_at=now))
            self._log(c, user, alert_id, "decided", before,
                      {"status": "decided", "assignee": who or user.name, "verdict": verdict, "note": note}, now)
        return self.get(alert_id)

    def reopen(self, alert_id: int, user: Reviewer) -> dict:
        self._need_lead(user, "reopen an alert")
        now = utcnow()
        with self.transaction() as c:
            a, who = self._locked(c, alert_id)
            if a.status == "open":
                raise ReviewError(f"alert {alert_id} is already open", 409)
            c.execute(update(Alert).where(Alert.id == alert_id).values(
                status="open", assignee_id=None, claimed_at=None, verdict=None, decided_at=None))
            self._log(c, user, alert_id, "reopened", {"status": a.status, "assignee": who, "verdict": a.verdict},
                      {"status": "open", "assignee": None, "verdict": None}, now)
        return self.get(alert_id)

    def assign(self, alert_id: int, user: Reviewer, assignee: str) -> dict:
        self._need_lead(user, "reassign an alert")
        now = utcnow()
        with self.transaction() as c:
            target = c.execute(select(User).where(User.name == assignee, User.active)).scalar()
            if target is None:
                raise ReviewError(f"no active user {assignee!r}", 404)
            a, who = self._locked(c, alert_id)
            if a.status == "decided":
                raise ReviewError(f"alert {alert_id} is decided; reopen it first", 409)
            c.execute(update(Alert).where(Alert.id == alert_id).values(
                status="claimed", assignee_id=target.id, claimed_at=now))
            self._log(c, user, alert_id, "assigned", {"status": a.status, "assignee": who},
                      {"status": "claimed", "assignee": target.name}, now)
        return self.get(alert_id)

    @staticmethod
    def _need_lead(user: Reviewer, what: str) -> None:
        if not user.is_lead:
            raise ReviewError(f"only a lead or an admin can {what}; {user.name} is an {user.role}", 403)

    @staticmethod
    def _locked(c, alert_id: int):
        row = c.execute(select(Alert, User.name).outerjoin(User, Alert.assignee_id == User.id)
                        .where(Alert.id == alert_id).with_for_update(of=Alert)).first()
        if row is None:
            raise ReviewError(f"no alert {alert_id}", 404)
        return row

    @staticmethod
    def _log(c, user: Reviewer | None, alert_id, action, before, after, at) -> None:
        c.execute(insert(AuditEntry).values(at=at, user_id=None if user is None else user.id,
                                            alert_id=alert_id, action=action, before=before, after=after))

    # -- verdicts out ---------------------------------------------------------------------------

    def labels(self):
        """The decided alerts as labels: transaction_id, label (1 fraud, 0 legit), decided_at,
        decided_by, model_id. "unsure" is left out: it is no label."""
        import pandas as pd

        with self.transaction() as c:
            rows = c.execute(
                select(Alert.transaction_id, Alert.verdict, Alert.decided_at, User.name, Alert.model_id)
                .join(Verdict, (Verdict.alert_id == Alert.id) & (Verdict.decided_at == Alert.decided_at))
                .join(User, Verdict.user_id == User.id)
                .where(Alert.status == "decided", Alert.verdict.in_(("fraud", "legit")))
                .order_by(Alert.decided_at, Alert.id)).all()
        df = pd.DataFrame(rows, columns=["transaction_id", "verdict", "decided_at", "decided_by", "model_id"])
        df = df.drop_duplicates("transaction_id", keep="last")
        df.insert(1, "label", (df.pop("verdict") == "fraud").astype("int8"))
        return df.reset_index(drop=True)

    def scored_alerts(self, model_id: str | None = None):
        """Every alert's score, the model threshold it was flagged at, its latest verdict (None
        while undecided), when it was made and when its transaction happened (`event_time`,
        None without a time column), of one model or all (`review.thresholds`)."""
        import pandas as pd

        query = select(Alert.score, Alert.threshold, Alert.verdict, Alert.created_at, Alert.model_id,
                       Alert.event_time)
        if model_id is not None:
            query = query.where(Alert.model_id == model_id)
        with self.transaction() as c:
            rows = c.execute(query).all()
        return pd.DataFrame(rows, columns=["score", "threshold", "verdict", "created_at", "model_id", "event_time"])

    def daily(self, days: int = 30) -> list[dict]:
        """Per day (UTC): alerts created, verdicts given, fraud and legit verdicts, the precision
        of the reviewed alerts (fraud / (fraud + legit)) and the median hours to a decision."""
        since = (utcnow() - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
        with self.transaction() as c:
            created = c.execute(select(Alert.created_at).where(Alert.created_at >= since)).scalars().all()
            decided = c.execute(select(Verdict.decided_at, Verdict.verdict, Alert.created_at)
                                .join(Alert, Verdict.alert_id == Alert.id)
                                .where(Verdict.decided_at >= since)).all()
        import pandas as pd

        out: dict = {}
        for t in created:
            out.setdefault(t.date(), {"alerts": 0, "verdicts": 0, "fraud": 0, "legit": 0, "hours": []})["alerts"] += 1
        for t, v, made in decided:
            d = out.setdefault(t.date(), {"alerts": 0, "verdicts": 0, "fraud": 0, "legit": 0, "hours": []})
            d["verdicts"] += 1
            d[v] = d.get(v, 0) + 1
            d["hours"].append((t - made).total_seconds() / 3600)
        rows = []
        for day in sorted(out):
            d = out[day]
            judged = d["fraud"] + d["legit"]
            rows.append({"day": day.isoformat(), "alerts": d["alerts"], "verdicts": d["verdicts"],
                         "fraud": d["fraud"], "legit": d["legit"],
                         "precision": d["fraud"] / judged if judged else None,
                         "median_hours_to_decision": float(pd.Series(d["hours"]).median()) if d["hours"] else None})
        return rows

    def verdict_counts(self) -> dict[str, int]:
        with self.transaction() as c:
            found = dict(c.execute(select(Alert.verdict, func.count()).where(Alert.status == "decided")
                                   .group_by(Alert.verdict)).all())
        return {v: found.get(v, 0) for v in VERDICTS}

    # -- users, tokens and sessions ---------------------------------------------------------------

    def add_user(self, name: str, role: str, password: str) -> str:
        """Add a user (the password hashed with Argon2id); returns their API token, shown once."""
        from argon2 import PasswordHasher

        name = name.strip()
        if not name or len(name) > 120:
            raise ReviewError("a user name must be 1 to 120 characters")
        if role not in ROLES:
            raise ReviewError(f"role must be one of {', '.join(ROLES)}; got {role!r}")
        if len(password) < 8:
            raise ReviewError("the password must be at least 8 characters")
        token = secrets.token_urlsafe(32)
        with self.transaction() as c:
            if c.execute(select(User.id).where(User.name == name)).first() is not None:
                raise ReviewError(f"user {name!r} already exists", 409)
            uid = c.execute(insert(User).values(name=name, role=role, password_hash=PasswordHasher().hash(password),
                                                token_hash=token_hash(token), active=True, created_at=utcnow())
                            .returning(User.id)).scalar_one()
            c.execute(insert(AuditEntry).values(at=utcnow(), user_id=None, alert_id=None, action="user added",
                                                before=None, after={"user": name, "role": role, "id": uid}))
        return token

    def user_by_token(self, token: str) -> Reviewer | None:
        with self.transaction() as c:
            u = c.execute(select(User).where(User.token_hash == token_hash(token), User.active)).scalar()
        return None if u is None else Reviewer(u.id, u.name, u.role)

    def login(self, name: str, password: str) -> tuple[str, str] | None:
        """A new session (cookie value, CSRF token) for the right password, else None."""
        from argon2 import PasswordHasher
        from argon2.exceptions import InvalidHashError, VerificationError

        with self.transaction() as c:
            u = c.execute(select(User).where(User.name == name, User.active)).scalar()
        hasher = PasswordHasher()
        if u is None:
            hasher.hash(password)  # the same work as a wrong password: no timing hint of who exists
            return None
        try:
            hasher.verify(u.password_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = utcnow()
        with self.transaction() as c:
            c.execute(insert(Session).values(id=token_hash(cookie), user_id=u.id, csrf=csrf, created_at=now,
                                             expires_at=now + timedelta(hours=SESSION_HOURS)))
            c.execute(insert(AuditEntry).values(at=now, user_id=u.id, alert_id=None, action="logged in",
                                                before=None, after=None))
        return cookie, csrf

    def session_user(self, cookie: str) -> tuple[Reviewer, str] | None:
        with self.transaction() as c:
            row = c.execute(select(User, Session.csrf).join(Session, Session.user_id == User.id)
                            .where(Session.id == token_hash(cookie), Session.expires_at > utcnow(),
                                   User.active)).first()
        if row is None:
            return None
        u, csrf = row
        return Reviewer(u.id, u.name, u.role), csrf

    def logout(self, cookie: str) -> None:
        from sqlalchemy import delete

        with self.transaction() as c:
            c.execute(delete(Session).where(Session.id == token_hash(cookie)))

    def users(self) -> list[dict]:
        with self.transaction() as c:
            rows = c.execute(select(User).order_by(User.name)).scalars().all()
        return [{"name": u.name, "role": u.role, "active": u.active} for u in rows]
