"""The review store's tables (SQLAlchemy 2 ORM): alerts, verdicts, users, sessions and the
append-only audit log. The database's shape is owned by the Alembic migrations in
`aedetect/review/migrations`; these classes must describe the head revision (a test compares
them)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

STATUSES = ("open", "claimed", "decided")
VERDICTS = ("fraud", "legit", "unsure")
ROLES = ("analyst", "lead", "admin")


def utcnow() -> datetime:
    """Naive UTC, the one time zone the store keeps (SQLite has no time zones)."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    # sha256 of the API token: the token itself is shown once, when the user is added.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("transaction_id", name="uq_alerts_transaction_id"),
        Index("ix_alerts_status_score", "status", "score"),
        Index("ix_alerts_status_priority", "status", "priority"),
        Index("ix_alerts_entity", "entity"),
        Index("ix_alerts_created_at", "created_at"),
        Index("ix_alerts_model_id", "model_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    transaction_id: Mapped[str] = mapped_column(String(200))
    transaction: Mapped[dict] = mapped_column(JSON)  # the row's columns, in the team's names
    score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    amount: Mapped[float | None] = mapped_column(Float, nullable=True)
    # score x amount when the row has an amount, else the score: the queue's "by value" order.
    priority: Mapped[float] = mapped_column(Float, server_default="0")
    model_id: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(64))
    reasons: Mapped[list] = mapped_column(JSON)  # [{"feature", "reason", "contribution"}], largest first
    top_reason: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    entity: Mapped[str | None] = mapped_column(String(300), nullable=True)  # "card_id=C17"
    history: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # the row's history features
    # When the transaction happened, in seconds (a datetime column: since 1970; a number column such
    # as ULB's Time: its own seconds), from the model's time column; None without one. A file
    # scored a week at a time makes its alerts within a second: rates per day read this, not
    # created_at (`review.thresholds`).
    event_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default="open")
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    verdict: Mapped[str | None] = mapped_column(String(16), nullable=True)  # the latest decision
    decided_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Verdict(Base):
    __tablename__ = "verdicts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    verdict: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    decided_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Session(Base):
    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie's value
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class AuditEntry(Base):
    """Append-only: the migrations add triggers that refuse UPDATE and DELETE on this table."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"), nullable=True, index=True)
    action: Mapped[str] = mapped_column(String(32))
    before: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    after: Mapped[dict | None] = mapped_column(JSON, nullable=True)
