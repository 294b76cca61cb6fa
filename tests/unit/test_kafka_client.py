"""The Kafka client runs as fast here as in production."""

from kafka.record import util


def test_kafka_python_checks_crcs_with_the_crc32c_extension() -> None:
    # Without the `crc32c` package kafka-python falls back to pure Python: 10x slower consumption.
    assert util.crc32c_c is not None
    assert util._crc32c is util.crc32c_c
    assert util.calc_crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
