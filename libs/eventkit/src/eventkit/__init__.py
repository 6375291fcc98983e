"""eventkit: the small shared library every eventshop service builds on.

settings   typed configuration from the environment (defaults match `make up`)
catalogue  the topics declared in schemas/catalogue.toml
events     one frozen dataclass per Avro record in schemas/avro
serde      Avro encode/decode through the schema registry (Confluent wire format)
producer   acks=all, idempotent producer whose deliveries are awaited
consumer   the consumer runner: handler first, offset after; poison to the dead-letter topic
"""
