"""When an alert's transaction happened (alerts.event_time, seconds), so that alerts per day
count the days of the transactions, not the second a scored file was loaded.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN, nullable: no table rebuild on SQLite; alerts made before it keep None
    # (their rates per day fall back to when they were made).
    op.add_column("alerts", sa.Column("event_time", sa.Float, nullable=True))


def downgrade() -> None:
    op.drop_column("alerts", "event_time")
