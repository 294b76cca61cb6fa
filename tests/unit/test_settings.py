"""Settings from the environment, Kafka security passed to clients, secrets never shown."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from syncstatus.cli.app import app
from syncstatus.kafka import client_config
from syncstatus.settings import Settings
from syncstatus.statemachine.statuses import Status


def test_settings_come_from_syncstatus_variables(monkeypatch):
    monkeypatch.setenv("SYNCSTATUS_DEDUPLICATION_APPS", '["plaid", "yodlee"]')
    monkeypatch.setenv("SYNCSTATUS_STAGE_TIMEOUTS_S", '{"2": 7200}')
    monkeypatch.setenv("SYNCSTATUS_PARK_WINDOW_S", "30")
    settings = Settings()
    policy = settings.policy()
    assert policy.deduplication_apps == {"plaid", "yodlee"}
    assert policy.stage_timeouts[Status.LOADING].total_seconds() == 7200
    assert policy.park_window.total_seconds() == 30


def test_a_stage_timeout_for_a_status_that_never_times_out_is_refused():
    with pytest.raises(ValidationError, match="has no stage timeout"):
        Settings(stage_timeouts_s={19: 10})


def test_plaintext_clients_get_no_security_options():
    assert client_config(Settings(bootstrap_servers="a:9092,b:9092")) == {
        "bootstrap_servers": ["a:9092", "b:9092"],
        "security_protocol": "PLAINTEXT",
    }


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_over_tls_reaches_every_client(mechanism):
    config = client_config(
        Settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism=mechanism,
            kafka_sasl_username="svc",
            kafka_sasl_password="s3cret",
            kafka_ssl_cafile="/ca.pem",
        )
    )
    assert config["security_protocol"] == "SASL_SSL"
    assert config["sasl_mechanism"] == mechanism
    assert (config["sasl_plain_username"], config["sasl_plain_password"]) == ("svc", "s3cret")
    assert config["ssl_cafile"] == "/ca.pem"


def test_mutual_tls_passes_certificate_and_key():
    config = client_config(
        Settings(
            kafka_security_protocol="SSL",
            kafka_ssl_certfile="/c.pem",
            kafka_ssl_keyfile="/k.pem",
            kafka_ssl_password="keypass",
        )
    )
    assert (config["ssl_certfile"], config["ssl_keyfile"], config["ssl_password"]) == (
        "/c.pem",
        "/k.pem",
        "keypass",
    )
    assert "sasl_mechanism" not in config


def test_config_prints_every_setting_with_secrets_masked(monkeypatch):
    monkeypatch.setenv("SYNCSTATUS_KAFKA_SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("SYNCSTATUS_KAFKA_SSL_PASSWORD", "keypass")
    monkeypatch.setenv("SYNCSTATUS_API_TOKEN", "t0ken-secret")
    monkeypatch.setenv("SYNCSTATUS_DATABASE_URL", "postgresql+psycopg://app:pgpass@db:5432/s")
    result = CliRunner().invoke(app, ["config"])
    assert result.exit_code == 0
    for secret in ("hunter2", "keypass", "pgpass", "t0ken-secret"):
        assert secret not in result.output
    assert "SYNCSTATUS_DATABASE_URL=postgresql+psycopg://app:***@db:5432/s" in result.output
    assert len(result.output.splitlines()) == len(Settings.model_fields)


def test_secrets_are_masked_in_the_settings_repr():
    settings = Settings(
        kafka_sasl_password="hunter2",
        api_token="t0ken-secret",
        database_url="postgresql+psycopg://app:pgpass@db:5432/s",
    )
    for secret in ("hunter2", "t0ken-secret", "pgpass"):
        assert secret not in repr(settings) and secret not in str(settings.redacted())


def test_a_blank_api_token_refuses_writes_like_an_unset_one():
    assert Settings(api_token="  ").api_token is None
