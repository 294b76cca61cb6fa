"""The embedded servers behave like real ones, including across restarts.

Restart tests use their own servers so they never disturb the session-wide ones.
"""

from pathlib import Path

import sqlalchemy as sa
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from syncstatus.devtools.embedded import EmbeddedKafka, EmbeddedPostgres


def test_postgres_is_version_18(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        assert " 18." in conn.execute(sa.text("select version()")).scalar_one()
    engine.dispose()


def test_postgres_restart_keeps_data(tmp_path: Path) -> None:
    with EmbeddedPostgres(tmp_path / "pg") as server:
        engine = sa.create_engine(server.url)
        with engine.begin() as conn:
            conn.execute(sa.text("create table t (x int)"))
            conn.execute(sa.text("insert into t values (42)"))
        engine.dispose()
        port = server.port

        server.restart()

        assert server.port == port
        engine = sa.create_engine(server.url)
        with engine.connect() as conn:
            assert conn.execute(sa.text("select x from t")).scalar_one() == 42
        engine.dispose()
    assert not server.is_running()


def test_postgres_start_adopts_running_server(postgres: EmbeddedPostgres) -> None:
    other = EmbeddedPostgres(postgres.data_dir)
    other.start()
    assert other.port == postgres.port


def _roundtrip(bootstrap_servers: str, topic: str) -> list[bytes]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    admin.close()

    producer = KafkaProducer(bootstrap_servers=bootstrap_servers)
    producer.send(topic, b"hello").get(timeout=10)
    producer.close()

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        enable_auto_commit=False,
    )
    consumer.assign([TopicPartition(topic, 0)])
    values: list[bytes] = []
    for _ in range(50):
        for records in consumer.poll(timeout_ms=200).values():
            values.extend(record.value for record in records)
        if values:
            break
    consumer.close()
    return values


def test_kafka_produce_and_consume(kafka: EmbeddedKafka) -> None:
    assert _roundtrip(kafka.bootstrap_servers, "embedded-roundtrip") == [b"hello"]


def test_kafka_restart_answers_again_and_forgets_topics() -> None:
    with EmbeddedKafka() as broker:
        assert _roundtrip(broker.bootstrap_servers, "before") == [b"hello"]
        broker.restart()
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        assert "before" not in admin.list_topics()
        admin.close()
        assert _roundtrip(broker.bootstrap_servers, "after") == [b"hello"]
