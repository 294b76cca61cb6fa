"""The use cases (apply a batch, sweep, issue a command, schedule, prune) and the ports they
need. Imports only the domain and its own ports: no Kafka, no SQL, no fastavro."""
