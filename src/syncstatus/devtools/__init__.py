"""Development tooling: embedded PostgreSQL and Tansu, `syncstatus dev`, the docs generator.
Importable only with the `[dev]` extra installed."""
