"""Everything that touches Kafka: settings, topics, Avro serde, clients, the embedded stack."""
