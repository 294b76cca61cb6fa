"""The Avro schemas (`*.avsc`, with every released version under `history/`), the codec that
frames them, and the messages syncstatus reads and writes."""
