"""docker-compose.yml, the Dockerfile and .dockerignore agree with the code they deploy.

Docker does not run on every machine this suite runs on, so the files are parsed and checked
against the real settings model: a setting renamed in `Settings`, a port changed in one place
only, a topic added to the service but not to the topic job, all fail here.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from syncstatus.kafka import input_topics
from syncstatus.service.engine import SWEEP_LIMIT
from syncstatus.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

PREFIX = Settings.model_config["env_prefix"]
SERVICE = "syncstatus"
KAFKA = "kafka"
TOPICS_JOB = "kafka-topics"
POSTGRES = "postgres"
MIGRATE = "migrate"
API = "api"
APP_SERVICES = (MIGRATE, SERVICE, API)
KAFKA_TOPICS_SH = "kafka-topics.sh"

INTERPOLATION = re.compile(r"\$(?:\{(?P<braced>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


# --- helpers ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_syncstatus_variables_from_this_shell(monkeypatch):
    """Settings must see only what compose sets, never the developer's own environment."""
    for name in list(os.environ):
        if name.startswith(PREFIX):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict[str, Any]]:
    return compose["services"]


def resolve(value: Any) -> Any:
    """Compose interpolation as `docker compose` does it with nothing set: use the default."""
    if not isinstance(value, str):
        return value
    text = value.replace("$$", "\0")

    def substitute(match: re.Match[str]) -> str:
        expression = match["braced"]
        if expression is None or ":-" not in expression:
            raise AssertionError(f"{match[0]!r} has no default: write ${{NAME:-default}}")
        return expression.split(":-", 1)[1]

    return INTERPOLATION.sub(substitute, text).replace("\0", "$")


def environment(service: dict[str, Any], raw: bool = False) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return dict(env) if raw else {k: resolve(v) for k, v in env.items()}


def syncstatus_variables(service: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in environment(service).items() if k.startswith(PREFIX)}


def field_of(variable: str) -> str:
    return variable.removeprefix(PREFIX).lower()


def settings_of(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a container of this service starts with: its environment, read as env."""
    for name, value in syncstatus_variables(service).items():
        monkeypatch.setenv(name, value)
    try:
        return Settings()
    except ValidationError as error:
        pytest.fail(f"the SYNCSTATUS_* environment is not valid for Settings:\n{error}")


def healthcheck_command(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    if isinstance(test, str):
        return test
    assert test[0] in ("CMD", "CMD-SHELL"), f"healthcheck test starts with {test[0]!r}"
    return " ".join(test[1:])


def listeners(spec: str) -> dict[str, tuple[str, int]]:
    """`NAME://host:port,...` as {NAME: (host, port)}; an empty host binds every interface."""
    result = {}
    for item in spec.split(","):
        name, address = item.strip().split("://", 1)
        host, port = address.rsplit(":", 1)
        result[name] = (host, int(port))
    return result


def protocol_map(spec: str) -> dict[str, str]:
    return dict(item.strip().split(":", 1) for item in spec.split(","))


def ports(service: dict[str, Any]) -> list[dict[str, Any]]:
    """Short and long port syntax as dicts with target, published (str or None), host_ip."""
    result = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            published = entry.get("published")
            result.append(
                {
                    "target": int(entry["target"]),
                    "published": None if published is None else str(published),
                    "host_ip": entry.get("host_ip"),
                }
            )
            continue
        parts = str(entry).split("/")[0].split(":")
        host_ip, published, target = [None] * (3 - len(parts)) + parts
        result.append({"target": int(target), "published": published or None, "host_ip": host_ip})
    return result


def duration_seconds(text: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 0.000001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def topic_commands(services) -> list[list[str]]:
    """Each kafka-topics.sh invocation of the topic job, as its argument list."""
    command = services[TOPICS_JOB].get("command")
    script = command if isinstance(command, str) else "\n".join(command)
    invocations = []
    for line in script.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        starts = [i for i, word in enumerate(words) if word.endswith(KAFKA_TOPICS_SH)]
        if starts:
            invocations.append(words[starts[0] + 1 :])
    return invocations


def option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def options(args: list[str], name: str) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args) if arg == name]


def created_topics(services) -> dict[str, list[str]]:
    created = {}
    for args in topic_commands(services):
        if "--create" in args:
            created[option(args, "--topic")] = args
    return created


def kafka_env(services) -> dict[str, str]:
    return {k: str(v) for k, v in environment(services[KAFKA]).items()}


def in_compose_listeners(services) -> dict[str, tuple[str, int]]:
    """Advertised listeners whose host is a service of this project: for in-compose clients."""
    advertised = listeners(kafka_env(services)["KAFKA_ADVERTISED_LISTENERS"])
    names = set(services) | {s.get("hostname") for s in services.values()} - {None}
    return {name: address for name, address in advertised.items() if address[0] in names}


def default(field: str) -> Any:
    return Settings.model_fields[field].default


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    instructions, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        current += " " + stripped[:-1] if stripped.endswith("\\") else " " + stripped
        if not stripped.endswith("\\"):
            keyword, _, arguments = current.strip().partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
            current = ""
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def dockerfile_args() -> dict[str, str]:
    args = {}
    for keyword, arguments in dockerfile_instructions():
        if keyword == "ARG" and "=" in arguments:
            name, value = arguments.split("=", 1)
            args[name] = value
    return args


def image_tag(image: str) -> str | None:
    name = image.split("@")[0]
    return name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else None


# --- the services ---------------------------------------------------------------------------


def test_the_expected_services_are_defined(services):
    missing = {KAFKA, TOPICS_JOB, POSTGRES, MIGRATE, SERVICE, API} - set(services)
    assert not missing, f"docker-compose.yml lacks the services {sorted(missing)}"


def test_every_syncstatus_variable_is_a_real_setting(services):
    unknown = {
        f"{name}: {variable}"
        for name, service in services.items()
        for variable in syncstatus_variables(service)
        if field_of(variable) not in Settings.model_fields
    }
    assert not unknown, (
        f"these variables match no field of syncstatus.settings.Settings and would be silently "
        f"ignored (extra='ignore'): {sorted(unknown)}"
    )


@pytest.mark.parametrize("name", APP_SERVICES)
def test_the_environment_validates_through_settings(services, monkeypatch, name):
    settings = settings_of(services[name], monkeypatch)
    for variable in syncstatus_variables(services[name]):
        assert field_of(variable) in settings.model_fields_set, f"{variable} was not read"


def test_environment_values_are_quoted(services):
    unquoted = [
        f"{name}: {variable}"
        for name, service in services.items()
        for variable, value in environment(service, raw=True).items()
        if isinstance(value, bool) or value is None
    ]
    assert not unquoted, (
        f"quote these values: a YAML boolean is rejected by older compose versions and spelled "
        f"True or true depending on the tool, and an empty value passes the host's variable "
        f"through unseen: {unquoted}"
    )


def test_every_interpolation_has_a_default():
    for match in INTERPOLATION.finditer(COMPOSE_FILE.read_text().replace("$$", "")):
        expression = match["braced"] or ""
        assert ":-" in expression, (
            f"{match[0]!r} has no default, so `docker compose up` fails or gets an empty value "
            f"without it; write ${{NAME:-default}}"
        )


# --- database -------------------------------------------------------------------------------


def test_the_database_url_uses_the_psycopg_driver(services, monkeypatch):
    url = make_url(settings_of(services[SERVICE], monkeypatch).database_url)
    assert url.drivername == "postgresql+psycopg", f"driver is {url.drivername}, not psycopg 3"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_the_database_url_points_at_the_postgres_service(services, monkeypatch, name):
    url = make_url(settings_of(services[name], monkeypatch).database_url)
    postgres_port = int(environment(services[POSTGRES]).get("PGPORT", 5432))
    assert (url.host, url.port or 5432) == (POSTGRES, postgres_port), (
        f"{name} connects to {url.host}:{url.port}, not the {POSTGRES} service on {postgres_port}"
    )


@pytest.mark.parametrize("name", APP_SERVICES)
def test_the_database_url_credentials_match_postgres(services, monkeypatch, name):
    url = make_url(settings_of(services[name], monkeypatch).database_url)
    postgres = environment(services[POSTGRES])
    expected = (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"])
    assert (url.username, url.password, url.database) == expected, (
        f"{name}'s database URL has user/password/db {url.username}/{url.password}/"
        f"{url.database}; postgres creates {'/'.join(expected)}"
    )


def test_the_postgres_password_comes_from_one_variable(services):
    raw_password = environment(services[POSTGRES], raw=True)["POSTGRES_PASSWORD"]
    assert raw_password.startswith("${") and "change-me" in raw_password, (
        "POSTGRES_PASSWORD should be ${POSTGRES_PASSWORD:-change-me}, set from outside"
    )
    for name in APP_SERVICES:
        url = environment(services[name], raw=True)[f"{PREFIX}DATABASE_URL"]
        assert f":{raw_password}@" in url, f"{name}'s database URL does not use {raw_password}"


def test_postgres_healthcheck_asks_the_database_the_service_uses(services):
    command = healthcheck_command(services[POSTGRES])
    postgres = environment(services[POSTGRES])
    assert "pg_isready" in command, "postgres healthcheck should be pg_isready"
    args = shlex.split(command)
    assert option(args, "-U") == postgres["POSTGRES_USER"], "pg_isready -U is not POSTGRES_USER"
    assert option(args, "-d") == postgres["POSTGRES_DB"], "pg_isready -d is not POSTGRES_DB"


def test_postgres_holds_the_connection_locks_of_as_many_instances_as_partitions(
    services, monkeypatch
):
    settings = settings_of(services[SERVICE], monkeypatch)
    server = dict(a.split("=", 1) for a in services[POSTGRES].get("command", []) if "=" in a)
    lock_table = int(server.get("max_locks_per_transaction", 64)) * int(
        server.get("max_connections", 100)
    )
    created = created_topics(services)
    instances = max(int(option(created[t], "--partitions")) for t in input_topics(settings))
    per_instance = settings.batch_size + 2 * SWEEP_LIMIT
    assert lock_table >= instances * per_instance, (
        f"{instances} instances may hold {instances * per_instance} locks; the lock table "
        f"of {POSTGRES} holds {lock_table}"
    )


def test_postgres_data_is_on_a_volume_at_the_path_of_its_major_version(services):
    image = resolve(services[POSTGRES]["image"])
    major = int(re.match(r"\d+", image_tag(image))[0])
    targets = [str(v).split(":")[1] for v in services[POSTGRES].get("volumes", [])]
    # 18+ images keep data in /var/lib/postgresql/<major>/docker and refuse the old path.
    expected = "/var/lib/postgresql" if major >= 18 else "/var/lib/postgresql/data"
    assert expected in targets, f"{image} needs its data volume at {expected}, not {targets}"


# --- kafka ----------------------------------------------------------------------------------


def test_kafka_runs_in_kraft_mode_as_a_single_node(services):
    env = kafka_env(services)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller", "one combined KRaft node expected"
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert len(voters) == 1 and voters[0].split("@")[0] == env["KAFKA_NODE_ID"], (
        f"the only quorum voter should be node {env['KAFKA_NODE_ID']}: {voters}"
    )
    for variable in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
    ):
        assert env.get(variable) == "1", f"{variable} must be 1 on a single broker"


def test_kafka_does_not_auto_create_topics(services):
    assert kafka_env(services).get("KAFKA_AUTO_CREATE_TOPICS_ENABLE") == "false", (
        "set KAFKA_AUTO_CREATE_TOPICS_ENABLE=false: topics come from the kafka-topics job"
    )


def test_kafka_keeps_its_data_on_a_volume(services):
    log_dirs = kafka_env(services).get("KAFKA_LOG_DIRS")
    targets = [str(v).split(":")[1] for v in services[KAFKA].get("volumes", [])]
    assert log_dirs in targets, f"KAFKA_LOG_DIRS={log_dirs} is not a volume ({targets})"


def test_every_kafka_listener_has_a_protocol_and_a_bound_port(services):
    env = kafka_env(services)
    bound = listeners(env["KAFKA_LISTENERS"])
    advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = protocol_map(env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"])
    assert set(bound) <= set(protocols), (
        f"listeners without a protocol: {set(bound) - set(protocols)}"
    )
    for name, (_, port) in advertised.items():
        assert name in bound, f"{name} is advertised but not in KAFKA_LISTENERS"
        assert bound[name][1] == port, f"{name} is advertised on {port}, bound on {bound[name][1]}"


def test_the_controller_listener_is_the_quorum_port_and_not_advertised(services):
    env = kafka_env(services)
    bound = listeners(env["KAFKA_LISTENERS"])
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller in bound, f"controller listener {controller} is not in KAFKA_LISTENERS"
    assert controller not in listeners(env["KAFKA_ADVERTISED_LISTENERS"]), (
        "a controller listener must not be advertised to clients"
    )
    voter_port = int(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].rsplit(":", 1)[1])
    assert voter_port == bound[controller][1], (
        f"quorum voters use port {voter_port}, the {controller} listener {bound[controller][1]}"
    )


def test_brokers_talk_to_each_other_on_an_in_compose_listener(services):
    name = kafka_env(services)["KAFKA_INTER_BROKER_LISTENER_NAME"]
    assert name in in_compose_listeners(services), (
        f"inter-broker listener {name} is not advertised on a compose service name"
    )


def test_the_host_listener_is_published_on_its_advertised_port(services):
    advertised = listeners(kafka_env(services)["KAFKA_ADVERTISED_LISTENERS"])
    published = {(p["published"], p["target"]) for p in ports(services[KAFKA])}
    for name, (host, port) in advertised.items():
        if host in ("localhost", "127.0.0.1"):
            assert (str(port), port) in published, (
                f"{name} is advertised as {host}:{port}, so port {port} must be published as "
                f"{port}:{port} (published: {sorted(published)})"
            )


def test_bootstrap_servers_match_an_advertised_in_compose_listener(services, monkeypatch):
    settings = settings_of(services[SERVICE], monkeypatch)
    reachable = {f"{host}:{port}" for host, port in in_compose_listeners(services).values()}
    for server in settings.bootstrap_servers.split(","):
        assert server in reachable, (
            f"SYNCSTATUS_BOOTSTRAP_SERVERS has {server}; kafka advertises {sorted(reachable)} "
            f"to clients inside compose"
        )


def test_the_client_listener_protocol_matches_the_service_security_protocol(services, monkeypatch):
    settings = settings_of(services[SERVICE], monkeypatch)
    protocols = protocol_map(kafka_env(services)["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"])
    by_address = {f"{h}:{p}": name for name, (h, p) in in_compose_listeners(services).items()}
    for server in settings.bootstrap_servers.split(","):
        listener = by_address[server]
        assert protocols[listener] == settings.kafka_security_protocol, (
            f"listener {listener} speaks {protocols[listener]}, the service "
            f"{settings.kafka_security_protocol}"
        )


def test_kafka_healthcheck_asks_a_client_listener(services):
    command = healthcheck_command(services[KAFKA])
    server = option(shlex.split(command), "--bootstrap-server")
    assert server, f"kafka healthcheck has no --bootstrap-server: {command}"
    env = kafka_env(services)
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    client_ports = {p for n, (_, p) in listeners(env["KAFKA_LISTENERS"]).items() if n != controller}
    assert int(server.rsplit(":", 1)[1]) in client_ports, (
        f"kafka healthcheck asks {server}; client listener ports are {sorted(client_ports)}"
    )


# --- topics ---------------------------------------------------------------------------------


def topic_names(settings: Settings) -> set[str]:
    """Every topic the service uses: the string settings named topic_*."""
    return {
        getattr(settings, name)
        for name in Settings.model_fields
        if name.startswith("topic_") and isinstance(getattr(settings, name), str)
    }


def test_the_topics_created_are_exactly_the_settings_defaults(services):
    settings = Settings()
    expected = topic_names(settings)
    assert set(input_topics(settings)) <= expected and len(expected) == 6
    assert set(created_topics(services)) == expected, (
        f"{TOPICS_JOB} creates {sorted(created_topics(services))}; Settings defaults are "
        f"{sorted(expected)}"
    )


def test_the_topics_created_are_the_ones_the_service_uses(services, monkeypatch):
    settings = settings_of(services[SERVICE], monkeypatch)
    used = topic_names(settings)
    assert set(created_topics(services)) == used, (
        f"the service uses {sorted(used)} but {TOPICS_JOB} creates "
        f"{sorted(created_topics(services))}"
    )


def test_topic_creation_is_idempotent(services):
    for topic, args in created_topics(services).items():
        assert "--if-not-exists" in args, f"creating {topic} fails on a second run"


def test_topics_are_created_through_an_in_compose_listener(services):
    reachable = {f"{host}:{port}" for host, port in in_compose_listeners(services).values()}
    for topic, args in created_topics(services).items():
        server = option(args, "--bootstrap-server")
        assert server in reachable, f"{topic} is created via {server}, not {sorted(reachable)}"


def test_every_topic_has_explicit_partitions_replication_and_retention(services):
    for topic, args in created_topics(services).items():
        partitions = option(args, "--partitions")
        assert partitions and int(partitions) > 0, f"{topic} has no --partitions"
        assert option(args, "--replication-factor") == "1", (
            f"{topic}: a single broker allows replication factor 1 only"
        )
        assert any(c.startswith("retention.ms=") for c in options(args, "--config")), (
            f"{topic} has no explicit retention.ms"
        )


def test_input_topics_allow_several_consumers(services):
    created = created_topics(services)
    for topic in input_topics(Settings()):
        assert int(option(created[topic], "--partitions")) > 1, (
            f"{topic} has one partition: scaled replicas of {SERVICE} would sit idle"
        )


def test_the_status_topic_keeps_every_record(services):
    args = created_topics(services)[Settings().topic_status]
    configs = dict(c.split("=", 1) for c in options(args, "--config"))
    retention = int(configs["retention.ms"])
    assert retention == -1 or retention >= 365 * 24 * 3600 * 1000, (
        f"status topic retention.ms={retention}: it is the audit feed, keep it a year or more"
    )
    assert "compact" not in configs.get("cleanup.policy", "delete"), (
        "compacting the status topic would keep only each connection's last status"
    )


def test_the_topic_job_uses_the_broker_image(services):
    assert resolve(services[TOPICS_JOB]["image"]) == resolve(services[KAFKA]["image"]), (
        f"{TOPICS_JOB} should run the broker's own tools version"
    )


# --- the service ----------------------------------------------------------------------------


def test_the_service_neither_migrates_nor_creates_topics(services, monkeypatch):
    settings = settings_of(services[SERVICE], monkeypatch)
    assert not settings.migrate_on_start, "the migrate job migrates; set MIGRATE_ON_START=false"
    assert not settings.create_topics, (
        "the kafka-topics job creates topics; set CREATE_TOPICS=false"
    )


def test_the_service_starts_after_migration_and_topics(services):
    depends_on = services[SERVICE].get("depends_on", {})
    for job in (MIGRATE, TOPICS_JOB):
        condition = (
            depends_on.get(job, {}).get("condition") if isinstance(depends_on, dict) else None
        )
        assert condition == "service_completed_successfully", (
            f"{SERVICE} must wait for {job} to exit 0 (condition: service_completed_successfully)"
        )


def test_the_commands_are_run_migrate_and_api(services):
    assert services[SERVICE]["command"] == ["run"], f"{SERVICE} should run `syncstatus run`"
    assert services[MIGRATE]["command"] == ["migrate"], f"{MIGRATE} should run `syncstatus migrate`"
    assert services[API]["command"] == ["api"], f"{API} should run `syncstatus api`"


def test_the_api_listens_on_all_interfaces_on_its_published_port(services, monkeypatch):
    settings = settings_of(services[API], monkeypatch)
    assert settings.api_host == "0.0.0.0", "on 127.0.0.1 inside its container nobody reaches it"
    assert [p["target"] for p in ports(services[API])] == [settings.api_port]
    assert all(not p["published"] for p in ports(services[API])), "a fixed host port stops --scale"


def test_the_api_healthcheck_asks_its_own_port(services, monkeypatch):
    port = settings_of(services[API], monkeypatch).api_port
    command = healthcheck_command(services[API])
    assert re.findall(r"http://(?:127\.0\.0\.1|localhost):(\d+)/", command) == [str(port)]


def test_the_api_keeps_reads_private_and_takes_named_tokens(services, monkeypatch):
    settings = settings_of(services[API], monkeypatch)
    assert settings.api_public_reads is False, "compose must not serve the connections openly"
    env = environment(services[API], raw=True)
    for variable in ("SYNCSTATUS_API_TOKEN", "SYNCSTATUS_API_TOKENS"):
        assert env.get(variable) == f"${{{variable}:-}}", f"{variable} should come from the shell"
    assert len(settings.tokens) == 0, "with nothing set, no token is accepted"


def test_the_api_healthcheck_needs_no_token(services):
    """Reads are private, so the healthcheck asks for a path that is always public."""
    from syncstatus.api.guard import is_public

    command = healthcheck_command(services[API])
    (path,) = re.findall(r"http://(?:127\.0\.0\.1|localhost):\d+(/[^'\"\s]*)", command)
    assert is_public(path.split("?")[0]), f"{path} needs a token: the healthcheck would fail"


def test_the_api_starts_after_migration(services):
    depends_on = services[API].get("depends_on", {})
    assert depends_on.get(MIGRATE, {}).get("condition") == "service_completed_successfully"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_the_app_services_are_built_from_the_dockerfile(services, name):
    build = services[name].get("build")
    context = build if isinstance(build, str) else (build or {}).get("context")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert context and (ROOT / context / dockerfile).resolve() == DOCKERFILE, (
        f"{name} is not built from {DOCKERFILE.name}"
    )


def test_the_metrics_port_is_published_as_a_container_port(services, monkeypatch):
    port = settings_of(services[SERVICE], monkeypatch).metrics_port
    published = [p for p in ports(services[SERVICE]) if p["target"] == port]
    assert published, f"SYNCSTATUS_METRICS_PORT={port} is not in the ports of {SERVICE}"


def test_the_service_can_be_scaled(services):
    service = services[SERVICE]
    assert "container_name" not in service, "container_name stops `--scale`: names must differ"
    for port in ports(service):
        fixed = port["published"] and "-" not in port["published"]
        assert not fixed, (
            f"host port {port['published']} is fixed, so a second replica cannot bind it; "
            f"publish the container port only, or a range"
        )


def test_the_service_healthcheck_hits_healthz_on_the_metrics_port(services, monkeypatch):
    port = settings_of(services[SERVICE], monkeypatch).metrics_port
    command = healthcheck_command(services[SERVICE])
    urls = re.findall(r"http://(?:127\.0\.0\.1|localhost):(\d+)(/\w+)", command)
    assert urls == [(str(port), "/healthz")], (
        f"the healthcheck should fetch http://127.0.0.1:{port}/healthz; it runs {command!r}"
    )
    assert "urllib" in command, "python's urllib, since the slim image has no curl"


def test_stop_grace_period_outlasts_a_relay_send(services, monkeypatch):
    settings = settings_of(services[SERVICE], monkeypatch)
    grace = duration_seconds(str(services[SERVICE].get("stop_grace_period", "10s")))
    assert grace > settings.delivery_timeout_ms / 1000, (
        f"stop_grace_period {grace}s: a relay may retry a send for "
        f"{settings.delivery_timeout_ms / 1000}s before the batch is committed, then SIGKILL"
    )


def test_long_running_services_restart_and_one_shot_jobs_do_not(services):
    for name in (KAFKA, POSTGRES, SERVICE, API):
        assert services[name].get("restart") == "unless-stopped", f"{name} should restart"
    for name in (MIGRATE, TOPICS_JOB):
        assert services[name].get("restart", "no") == "no", f"one-shot {name} must not restart"


# --- compose wiring -------------------------------------------------------------------------


def test_every_depends_on_target_exists(services):
    for name, service in services.items():
        for target in service.get("depends_on", {}):
            assert target in services, f"{name} depends on {target}, which is not a service"


def test_services_waited_on_as_healthy_have_a_healthcheck(services):
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        for target, spec in depends_on.items() if isinstance(depends_on, dict) else []:
            if spec.get("condition") == "service_healthy":
                check = services[target].get("healthcheck", {})
                assert check.get("test") and not check.get("disable"), (
                    f"{name} waits for {target} to be healthy, but {target} has no healthcheck"
                )


def test_services_waited_on_to_complete_are_one_shot(services):
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        for target, spec in depends_on.items() if isinstance(depends_on, dict) else []:
            if spec.get("condition") == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", (
                    f"{name} waits for {target} to exit, but {target} restarts"
                )


def test_named_volumes_are_declared(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0] if isinstance(volume, str) else volume["source"]
            if not source.startswith((".", "/", "~")):
                assert source in declared, f"{name} uses volume {source}, not declared"


def test_images_are_pinned(services):
    for name, service in services.items():
        image = resolve(service.get("image", ""))
        assert image, f"{name} has no image name"
        tag = image_tag(image)
        assert tag and tag != "latest", f"{name} uses {image}: pin a tag other than latest"


def test_the_built_image_is_tagged_with_the_project_version(services):
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name in APP_SERVICES:
        image = resolve(services[name]["image"])
        assert image_tag(image) == version, f"{name} tags its image {image}, version is {version}"


# --- Dockerfile -----------------------------------------------------------------------------


def test_the_image_is_python_311_slim():
    base = final_stage()[0][1].split(" AS ")[0].split(" as ")[0].strip()
    base = re.sub(r"\$\{?(\w+)\}?", lambda m: dockerfile_args().get(m[1], m[0]), base)
    assert base.startswith("python:3.11-slim"), f"the runtime stage is FROM {base}"


def test_the_dockerfile_runs_as_a_non_root_user():
    users = [arguments for keyword, arguments in final_stage() if keyword == "USER"]
    assert users, "the runtime stage has no USER: the service would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"the service runs as {users[-1]}"


def test_the_dockerfile_exposes_the_default_metrics_and_api_ports():
    exposed = {
        int(port.split("/")[0])
        for keyword, arguments in final_stage()
        if keyword == "EXPOSE"
        for port in arguments.split()
    }
    for name in ("metrics_port", "api_port"):
        assert default(name) in exposed, f"EXPOSE {sorted(exposed)} lacks the default {name}"


def test_the_dockerfile_healthcheck_hits_healthz_on_the_default_metrics_port():
    checks = [arguments for keyword, arguments in final_stage() if keyword == "HEALTHCHECK"]
    assert checks, "the Dockerfile has no HEALTHCHECK"
    urls = re.findall(r"http://(?:127\.0\.0\.1|localhost):(\d+)(/\w+)", checks[-1])
    assert urls == [(str(default("metrics_port")), "/healthz")], (
        f"HEALTHCHECK should fetch /healthz on {default('metrics_port')}: {checks[-1]}"
    )


def test_the_dockerfile_entrypoint_is_the_cli_and_runs_the_service():
    stage = dict(final_stage())
    assert json.loads(stage["ENTRYPOINT"]) == ["syncstatus"], "ENTRYPOINT should be [syncstatus]"
    assert json.loads(stage["CMD"]) == ["run"], 'CMD should be ["run"] (exec form: SIGTERM)'


def test_the_build_context_has_what_the_dockerfile_copies_and_nothing_local():
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def sent(path: str) -> bool:
        """Docker's rule: the last pattern matching the path or a parent of it wins."""
        parts = path.split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        included = True
        for pattern in patterns:
            negated = pattern.startswith("!")
            clean = pattern.lstrip("!").strip("/")
            variants = {clean, clean.removeprefix("**/")}
            if any(fnmatch.fnmatch(c, v) for c in candidates for v in variants):
                included = negated
        return included

    copied = [
        source
        for keyword, arguments in dockerfile_instructions()
        if keyword == "COPY" and "--from" not in arguments
        for source in arguments.split()[:-1]
        if not source.startswith("--")
    ]
    for source in [*copied, "src/syncstatus/cli/app.py"]:
        assert sent(source), f"{source} is copied by the Dockerfile but .dockerignore drops it"
    for local in [".git", ".syncstatus", ".env", "tests", "src/syncstatus/__pycache__"]:
        assert not sent(local), f".dockerignore sends {local} into the build context"


# --- docker compose itself, where it is installed -------------------------------------------


def _compose_plugin() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


@pytest.mark.skipif(not _compose_plugin(), reason="docker compose plugin not installed")
def test_docker_compose_config_accepts_the_file():
    env = {k: v for k, v in os.environ.items() if k not in ("POSTGRES_PASSWORD", "IMAGE_TAG")}
    result = subprocess.run(
        ["docker", "compose", "--file", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, f"docker compose config:\n{result.stderr}"
