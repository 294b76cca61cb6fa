"""`syncstatus dev`: the embedded default — Tansu and PostgreSQL started by the project itself."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from syncstatus.devtools.embedded import LOOPBACK, EmbeddedKafka, EmbeddedPostgres, free_port
from syncstatus.settings import Settings

# Tansu holds every group join for half the session timeout (README, Settings).
TANSU_CONSUMER = {"kafka_session_timeout_ms": 2000, "kafka_heartbeat_interval_ms": 500}


def _port(preferred: int) -> int:
    """The usual port when it is free, so other commands find the service by default."""
    with socket.socket() as probe:
        try:
            probe.bind((LOOPBACK, preferred))
        except OSError:
            return free_port()
    return preferred


@contextmanager
def embedded(data_dir: Path, base: Settings) -> Iterator[Settings]:
    """Start both servers; yield settings pointing at them (environment values still win).

    Without SYNCSTATUS_API_TOKEN a fresh token is made, so the dashboard's buttons work, and
    reads are public (unless SYNCSTATUS_API_PUBLIC_READS says otherwise), so the dashboard
    shows the connections without one; the banner says both.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    with (
        EmbeddedPostgres(data_dir / "pg", port=_port(5432)) as postgres,
        EmbeddedKafka(port=_port(9092), log_file=data_dir / "tansu.log") as kafka,
    ):
        defaults = {
            "database_url": postgres.url,
            "bootstrap_servers": kafka.bootstrap_servers,
            "metrics_port": _port(9108),
            "api_port": _port(8080),
            "api_token": secrets.token_urlsafe(12),
            "api_public_reads": True,
            **TANSU_CONSUMER,
        }
        unset = {k: v for k, v in defaults.items() if k not in base.model_fields_set}
        yield Settings.model_validate({**base.model_dump(exclude_unset=True), **unset})
