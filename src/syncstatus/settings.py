"""Every setting of the service, read from `SYNCSTATUS_*` environment variables."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from syncstatus.statemachine.events import DEFAULT_ID_PATTERN, EventLimits
from syncstatus.statemachine.policy import TIMEOUT_STATUSES, Policy
from syncstatus.statemachine.statuses import Status
from syncstatus.tokens import TokenTable, legacy_token, parse_entries


class Settings(BaseSettings):
    # Errors quote no input: some settings are secrets (a token pasted for its hash, say).
    model_config = SettingsConfigDict(
        env_prefix="SYNCSTATUS_", extra="ignore", hide_input_in_errors=True
    )

    database_url: str = Field(
        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        description="SQLAlchemy URL of the PostgreSQL database (psycopg 3 driver).",
        repr=False,
    )
    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma separated."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How every Kafka client of the service connects."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism, with a SASL_* security protocol."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(
        None, description="SASL password (never logged or printed)."
    )
    kafka_ssl_cafile: str | None = Field(None, description="CA bundle that signed the brokers.")
    kafka_ssl_certfile: str | None = Field(None, description="Client certificate (mutual TLS).")
    kafka_ssl_keyfile: str | None = Field(None, description="Client private key (mutual TLS).")
    kafka_ssl_password: SecretStr | None = Field(
        None, description="Password of the client private key (never logged or printed)."
    )
    api_host: str = Field("0.0.0.0", description="Address `syncstatus api` listens on.")
    api_port: int = Field(8080, gt=0, lt=65536, description="Port of `syncstatus api`.")
    api_token: SecretStr | None = Field(
        None,
        description="One bearer token with the admin role, recorded as `default` (the single "
        "token of earlier versions; SYNCSTATUS_API_TOKENS names each).",
    )
    api_tokens: SecretStr | None = Field(
        None,
        description="Named API tokens, `name:role:sha256hex` separated by commas: the name "
        "commands record as requested_by, a role (read: the GETs; operate: also the commands; "
        "admin: also delete and redrive) and the SHA-256 of the token in hex; "
        "`name:role:sha256hex:workspace` confines the token to one workspace.",
    )
    api_tokens_file: Path | None = Field(
        None,
        description="A file of more `name:role:sha256hex[:workspace]` entries, one a line "
        "(# comments); read at start.",
    )
    api_public_reads: bool = Field(
        False,
        description="Serve the API's GETs without a token (false: they need any valid token). "
        "The dashboard page, /static, /openapi.json and /docs are always public.",
    )
    api_max_body_bytes: int = Field(
        65536, gt=0, description="Largest request body the API reads (larger: 413)."
    )
    api_request_timeout_s: float = Field(
        10,
        gt=0,
        description="Seconds a connection has to deliver a whole request before it is closed.",
    )
    api_docs: bool = Field(
        False,
        description="Serve the OpenAPI page at /docs (it loads swagger-ui from a CDN, so it "
        "goes without the dashboard's Content-Security-Policy); /openapi.json is always served.",
    )
    scheduler_interval_s: float = Field(
        30, gt=0, description="Seconds between looks for connections due a sync."
    )
    accounts_sync_every_s: float = Field(
        86400, gt=0, description="How often each active connection's accounts are synced."
    )
    metrics_port: int = Field(
        9108, gt=0, lt=65536, description="Port of /metrics, /healthz and /readyz."
    )
    metrics_host: str = Field(
        "0.0.0.0", description="Address /metrics, /healthz and /readyz listen on."
    )
    authorization_timeout_s: float = Field(
        900, gt=0, description="Seconds in Authorization (6) before it times out (20)."
    )
    stage_timeout_s: float = Field(
        21600, gt=0, description="Seconds a session may stay in a stage status before 23."
    )
    stage_timeouts_s: dict[int, float] = Field(
        default_factory=dict,
        description='Per-status overrides of the stage timeout, as JSON: {"2": 7200}.',
    )
    park_window_s: float = Field(
        60, gt=0, description="Seconds an early event waits for its predecessors."
    )
    clock_skew_s: float = Field(
        300,
        ge=0,
        description="How far any producer's clock may be off. Stamps of two producers closer "
        "than twice this never decide which event came first.",
    )
    app_names: dict[str, str] = Field(
        default_factory=dict,
        description="Data sources' display names, JSON: "
        '{"facebook_ads": "Facebook Ads"}; an app not named is shown humanised.',
    )
    deduplication_apps: set[str] = Field(
        default_factory=set,
        description='Apps that must pass Deduplication (21) before Structuring, JSON: ["plaid"].',
    )

    topic_auth: str = Field("syncstatus.auth", description="Input: authorization events.")
    topic_webhooks: str = Field("syncstatus.webhooks", description="Input: webhook events.")
    topic_pipeline: str = Field("syncstatus.pipeline", description="Input: pipeline events.")
    topic_status: str = Field("syncstatus.status", description="Output: status changes.")
    topic_dead_letter: str = Field(
        "syncstatus.dead-letter", description="Output: refused messages, with the reason."
    )
    topic_commands: str = Field(
        "syncstatus.commands", description="Output: commands people and the scheduler issue."
    )
    consumer_group: str = Field("syncstatus", description="Kafka consumer group id.")
    kafka_session_timeout_ms: int = Field(
        45000, gt=0, description="Consumer group session timeout (Kafka's default: 45 s)."
    )
    kafka_heartbeat_interval_ms: int = Field(
        3000, gt=0, description="Consumer heartbeat interval; under a third of the session."
    )
    kafka_fetch_max_wait_ms: int = Field(
        100, gt=0, description="Longest a fetch waits for data (0 never returns on Tansu)."
    )
    batch_size: int = Field(
        1000, gt=0, description="Most messages applied in one database transaction."
    )
    relay_batch_size: int = Field(1000, gt=0, description="Most status changes sent per round.")
    relay_idle_s: float = Field(
        0.5,
        gt=0,
        description="Longest a relay waits before looking for new rows again; a database "
        "notification wakes it at once.",
    )
    kafka_max_record_bytes: int = Field(
        1_000_000,
        gt=4096,
        description="Largest record the service publishes, under the brokers' message.max.bytes; "
        "a dead letter that would be larger goes out without its value (PostgreSQL keeps it).",
    )
    delivery_timeout_ms: int = Field(
        30000, gt=0, description="How long the producer retries a send before it fails."
    )
    webhook_allow_http_loopback: bool = Field(
        False,
        description="Let webhook subscriptions target http:// on a loopback address (local "
        "receivers, tests); otherwise every target is https.",
    )
    webhook_timeout_s: float = Field(
        10, gt=0, description="Seconds a webhook receiver has to answer a delivery."
    )
    webhook_connect_timeout_s: float = Field(
        5, gt=0, description="Seconds to connect to a webhook receiver."
    )
    webhook_retry_period_s: float = Field(
        3600,
        gt=0,
        description="How long a webhook delivery is retried (exponential backoff with "
        "jitter) before its subscription is marked failing and paused, alone, until resumed.",
    )
    webhook_retry_initial_s: float = Field(
        1, gt=0, description="The first wait before a failed webhook delivery is tried again."
    )
    webhook_retry_max_s: float = Field(
        300, gt=0, description="The longest wait between two attempts of a webhook delivery."
    )
    webhook_workers: int = Field(
        8, gt=0, description="Webhook subscriptions one process delivers at the same time."
    )
    webhook_batch_size: int = Field(
        100,
        gt=0,
        description="Webhook deliveries recorded per transaction; after a crash at most this "
        "many are delivered again (same webhook-id).",
    )
    webhook_log_retention_s: float = Field(
        604800, gt=0, description="Webhook delivery log entries are pruned after this."
    )
    change_stream_poll_s: float = Field(
        0.5, gt=0, description="How often GET /changes/stream looks for new records."
    )
    change_stream_heartbeat_s: float = Field(
        15, gt=0, description="Seconds of silence after which GET /changes/stream sends a comment."
    )
    sweep_interval_s: float = Field(1.0, gt=0, description="Seconds between timeout sweeps.")
    outbox_retention_s: float = Field(
        86400,
        gt=0,
        description="Published status changes (outbox) and the scheduler's published "
        "commands are pruned after this.",
    )
    idempotency_retention_s: float = Field(
        604800,
        gt=0,
        description="Event ids are remembered this long; keep it above any replay you expect.",
    )
    prune_interval_s: float = Field(60, gt=0, description="Seconds between retention prunes.")
    create_topics: bool = Field(True, description="Create missing topics on start.")
    topic_partitions: int = Field(4, gt=0, description="Partitions of the topics it creates.")
    topic_replication: int = Field(
        1, gt=0, description="Replication factor of the topics it creates."
    )
    migrate_on_start: bool = Field(True, description="Migrate the database on start.")
    log_level: str = Field("INFO", description="DEBUG logs every transition.")
    log_json: bool = Field(True, description="JSON log lines (false: human-readable).")

    max_message_bytes: int = Field(
        1_048_576, gt=0, description="Larger input messages are dead-lettered unread."
    )
    max_id_length: int = Field(
        256,
        gt=0,
        description="Longest connection, session, app, producer, workspace or account id.",
    )
    id_pattern: str = Field(
        DEFAULT_ID_PATTERN,
        description="Regular expression every connection, session, app, producer and "
        "workspace id must match whole; the API serves exactly these ids.",
    )
    max_text_length: int = Field(
        4096, gt=0, description="Longest error text, attribute value or account name."
    )
    max_attributes: int = Field(64, gt=0, description="Most attributes one event may carry.")
    max_accounts: int = Field(10_000, gt=0, description="Most accounts one event may list.")
    max_clock_skew_s: float = Field(
        3600, gt=0, description="Events stamped further in the future than this are refused."
    )
    earliest_occurred_at: datetime = Field(
        datetime(2000, 1, 1, tzinfo=UTC),
        description="Events stamped before this are refused (zero and default timestamps).",
    )

    _tokens: TokenTable = PrivateAttr(default_factory=TokenTable)

    @field_validator("api_token", "api_tokens")
    @classmethod
    def _blank_token_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        """Compose passes an unset variable as empty; that must refuse writes, not accept ""."""
        return value if value is not None and value.get_secret_value().strip() else None

    @field_validator("api_tokens_file", mode="before")
    @classmethod
    def _blank_path_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _parse_tokens(self) -> Settings:
        """Every token entry checked at start: a bad one stops the process, naming it."""
        tokens = [] if self.api_token is None else [legacy_token(self.api_token.get_secret_value())]
        if self.api_tokens is not None:
            tokens += parse_entries(self.api_tokens.get_secret_value(), "SYNCSTATUS_API_TOKENS")
        if self.api_tokens_file is not None:
            try:
                text = self.api_tokens_file.read_text()
            except (OSError, UnicodeDecodeError) as error:
                raise ValueError(
                    f"SYNCSTATUS_API_TOKENS_FILE {self.api_tokens_file} cannot be read: {error}"
                ) from None
            tokens += parse_entries(text, str(self.api_tokens_file))
        rule = re.compile(self.id_pattern)
        for token in tokens:
            workspace = token.workspace
            if workspace is not None and not (
                len(workspace) <= self.max_id_length and rule.fullmatch(workspace)
            ):
                raise ValueError(
                    f"token {token.name!r}: its workspace does not match the id rule "
                    "(SYNCSTATUS_ID_PATTERN, SYNCSTATUS_MAX_ID_LENGTH)"
                )
        self._tokens = TokenTable(tokens)
        return self

    @property
    def tokens(self) -> TokenTable:
        """The API's tokens: SYNCSTATUS_API_TOKEN (admin, `default`), then the named ones."""
        return self._tokens

    @field_validator("id_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        re.compile(value)
        return value

    @field_validator("earliest_occurred_at")
    @classmethod
    def _earliest_in_utc(cls, value: datetime) -> datetime:
        """A bound without a zone is UTC, so it compares with every event's stamp."""
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    @field_validator("stage_timeouts_s")
    @classmethod
    def _only_statuses_that_time_out(cls, value: dict[int, float]) -> dict[int, float]:
        allowed = sorted(int(s) for s in TIMEOUT_STATUSES)
        for code in value:
            if code not in allowed:
                raise ValueError(f"status {code} has no stage timeout; statuses: {allowed}")
        return value

    def redacted(self) -> dict[str, object]:
        """Every setting as it is in force, with passwords (also inside URLs) masked."""
        values = self.model_dump(mode="json")
        values["database_url"] = self.database_url_redacted
        if self.api_tokens is not None:
            named = TokenTable(parse_entries(self.api_tokens.get_secret_value(), ""))
            values["api_tokens"] = named.describe() + " (hashes masked)"
        return values

    @property
    def database_url_redacted(self) -> str:
        return make_url(self.database_url).render_as_string(hide_password=True)

    def event_limits(self) -> EventLimits:
        return EventLimits(
            max_message_bytes=self.max_message_bytes,
            max_id_length=self.max_id_length,
            id_pattern=re.compile(self.id_pattern),
            max_text_length=self.max_text_length,
            max_attributes=self.max_attributes,
            max_accounts=self.max_accounts,
            max_clock_skew=timedelta(seconds=self.max_clock_skew_s),
            earliest=self.earliest_occurred_at,
        )

    def policy(self) -> Policy:
        return Policy(
            deduplication_apps=frozenset(self.deduplication_apps),
            park_window=timedelta(seconds=self.park_window_s),
            authorization_timeout=timedelta(seconds=self.authorization_timeout_s),
            stage_timeout=timedelta(seconds=self.stage_timeout_s),
            stage_timeouts={
                Status(code): timedelta(seconds=s) for code, s in self.stage_timeouts_s.items()
            },
            clock_skew=timedelta(seconds=self.clock_skew_s),
        )
