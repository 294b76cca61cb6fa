"""The HTTP API and dashboard: `syncstatus api`."""
