"""Login sessions; the queue's "by value" order (alerts.priority, filled for existing alerts)
and an index for its model filter;
the entity history behind an alert; the audit log made append-only in the database itself.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

GUARDS = {
    "sqlite": [
        "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit "
        "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
        "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit "
        "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    ],
    "postgresql": [
        "CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$",
        "CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit "
        "FOR EACH ROW EXECUTE FUNCTION audit_append_only()",
    ],
}
UNGUARDS = {
    "sqlite": ["DROP TRIGGER audit_no_update", "DROP TRIGGER audit_no_delete"],
    "postgresql": ["DROP TRIGGER audit_append_only ON audit", "DROP FUNCTION audit_append_only()"],
}


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
    )
    # Plain ADD COLUMN (with a default for the NOT NULL one): no table rebuild on SQLite.
    op.add_column("alerts", sa.Column("priority", sa.Float, nullable=False, server_default="0"))
    op.add_column("alerts", sa.Column("history", sa.JSON, nullable=True))
    op.execute("UPDATE alerts SET priority = score * COALESCE(amount, 1.0)")
    op.create_index("ix_alerts_status_priority", "alerts", ["status", "priority"])
    op.create_index("ix_alerts_model_id", "alerts", ["model_id"])  # the queue's model filter
    for statement in GUARDS.get(op.get_bind().dialect.name, []):
        op.execute(statement)


def downgrade() -> None:
    for statement in UNGUARDS.get(op.get_bind().dialect.name, []):
        op.execute(statement)
    op.drop_index("ix_alerts_model_id", "alerts")
    op.drop_index("ix_alerts_status_priority", "alerts")
    op.drop_column("alerts", "history")
    op.drop_column("alerts", "priority")
    op.drop_table("sessions")
