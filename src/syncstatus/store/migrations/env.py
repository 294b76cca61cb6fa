"""Alembic environment: runs the migrations on the connection `syncstatus.store.database`
hands over, or on `sqlalchemy.url` when the alembic command line is used."""

from alembic import context
from sqlalchemy import create_engine

from syncstatus.store.schema import metadata

config = context.config
connection = config.attributes.get("connection")

if connection is None:
    with create_engine(config.get_main_option("sqlalchemy.url")).connect() as connection:
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
