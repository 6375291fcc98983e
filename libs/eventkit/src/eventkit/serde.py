"""Avro in the Confluent wire format (magic byte 0, 4-byte schema id, Avro body) via the registry.

Encoding goes through confluent-kafka's AvroSerializer with auto-registration off: schemas are
registered by `make schemas` (eventkit.provision), so a producer can only write what was registered.
Decoding resolves the writer schema by id through the same registry client, then reads it into this
process's own schema for that record (Avro schema resolution), so old readers read new data.
"""

from __future__ import annotations

import io
import json
import struct
from functools import lru_cache
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext
from fastavro import parse_schema, schemaless_reader

from eventkit.catalogue import Catalogue
from eventkit.events import EVENT_TYPES, Event, UnknownEvent

_HEADER = struct.Struct(">bI")


class DeserializationError(Exception):
    """The bytes are not a readable eventshop event (wrong magic byte, unknown schema id, bad body)."""


class AvroCodec:
    def __init__(self, registry: SchemaRegistryClient, catalogue: Catalogue) -> None:
        self.registry = registry
        self.catalogue = catalogue
        self._serializers: dict[str, AvroSerializer] = {}
        self._reader_schemas: dict[str, Any] = {}
        self._writer_schema = lru_cache(maxsize=1024)(self._fetch_writer_schema)

    @classmethod
    def connect(cls, registry_url: str, catalogue: Catalogue) -> AvroCodec:
        return cls(SchemaRegistryClient({"url": registry_url}), catalogue)

    # -- encode ------------------------------------------------------------------------------------
    def encode(self, topic: str, event: Event) -> bytes:
        serializer = self._serializers.get(topic)
        if serializer is None:
            spec = self.catalogue.topic(topic)
            if spec.value != event.RECORD:
                raise TypeError(f"topic {topic} carries {spec.value}, not {event.RECORD}")
            serializer = AvroSerializer(
                self.registry,
                self.catalogue.schema_str(spec.value),
                lambda e, _ctx: e.to_record(),
                conf={"auto.register.schemas": False, "use.latest.version": False},
            )
            self._serializers[topic] = serializer
        data = serializer(event, SerializationContext(topic, MessageField.VALUE))
        assert data is not None
        return data

    # -- decode ------------------------------------------------------------------------------------
    def decode(self, data: bytes | None) -> Event | UnknownEvent:
        if data is None or len(data) < _HEADER.size:
            raise DeserializationError(f"record too short for the wire format ({len(data or b'')} bytes)")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != 0:
            raise DeserializationError(f"unknown magic byte {magic}; expected 0 (Confluent wire format)")
        writer = self._writer_schema(schema_id)
        name = writer["name"].rsplit(".", 1)[-1]
        event_type = EVENT_TYPES.get(name)
        reader = self._reader_schema(name) if event_type else None
        try:
            record = schemaless_reader(io.BytesIO(data[_HEADER.size :]), writer, reader)
        except Exception as exc:  # fastavro raises EOFError, ValueError, IndexError... on bad bodies
            raise DeserializationError(f"cannot read {name} body with schema id {schema_id}: {exc!r}") from exc
        if not isinstance(record, dict):
            raise DeserializationError(f"schema id {schema_id} is not a record schema")
        if event_type is None:
            return UnknownEvent(record_name=name, fields=record)
        try:
            return event_type.from_record(record)
        except (TypeError, ValueError) as exc:  # readable Avro, but not a valid event (see __post_init__)
            raise DeserializationError(f"invalid {name}: {exc}") from exc

    def _fetch_writer_schema(self, schema_id: int) -> Any:
        try:
            schema = self.registry.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise DeserializationError(f"schema id {schema_id} unknown to the registry") from exc
            raise  # registry unreachable or failing: transient, not the record's fault
        if schema.schema_type not in (None, "AVRO"):
            raise DeserializationError(f"schema id {schema_id} is {schema.schema_type}, not AVRO")
        return parse_schema(json.loads(schema.schema_str or "null"))

    def _reader_schema(self, record_name: str) -> Any:
        schema = self._reader_schemas.get(record_name)
        if schema is None:
            schema = parse_schema(self.catalogue.schema(record_name))
            self._reader_schemas[record_name] = schema
        return schema
