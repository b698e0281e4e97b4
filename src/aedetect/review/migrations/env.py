"""Alembic's environment for the review store: run by `aedetect.review.store.upgrade` with the
connection it opened (no alembic.ini: the script location is this package's folder)."""

from alembic import context

from aedetect.review.tables import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
