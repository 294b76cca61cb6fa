"""PostgreSQL adapter: schema, migrations and the unit of work over the connection aggregate."""
