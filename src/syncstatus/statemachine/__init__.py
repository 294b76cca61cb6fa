"""The domain: statuses, events, the machine and the connection aggregate. No I/O here."""
