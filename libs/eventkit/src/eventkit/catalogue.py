"""The topic catalogue (schemas/catalogue.toml): every topic, its settings, key, schema and producer."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    value: str  # Avro record name (schemas/avro/<value>.avsc); for other formats, what the records are
    producer: str  # the single service that writes this topic
    partitions: int
    replication_factor: int
    cleanup_policy: str
    retention_ms: int
    doc: str = ""
    # "avro" (registry, Confluent wire format) or e.g. "faust-json" (a Faust table's changelog: no schema)
    value_format: str = "avro"
    # further Kafka topic configs, e.g. {"segment.bytes": "8388608"} (catalogue key `config`)
    extra_config: tuple[tuple[str, str], ...] = ()

    @property
    def is_avro(self) -> bool:
        return self.value_format == "avro"

    @property
    def subject(self) -> str:
        return f"{self.name}-value"

    def config(self) -> dict[str, str]:
        return {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            **dict(self.extra_config),
        }


@dataclass(frozen=True)
class Catalogue:
    topics: tuple[TopicSpec, ...]
    order_events_pattern: str
    dead_letter_suffix: str
    dead_letter_retention_ms: int
    schemas_dir: Path

    def topic(self, name: str) -> TopicSpec:
        for spec in self.topics:
            if spec.name == name:
                return spec
        raise KeyError(f"topic {name!r} is not in the catalogue")

    def topic_for(self, record_name: str) -> TopicSpec:
        """The one topic that carries events of this record type."""
        for spec in self.topics:
            if spec.value == record_name:
                return spec
        raise KeyError(f"no topic in the catalogue carries {record_name!r}")

    def produced_by(self, service: str) -> tuple[TopicSpec, ...]:
        return tuple(spec for spec in self.topics if spec.producer == service)

    def dead_letter_topic(self, topic: str) -> str:
        return topic + self.dead_letter_suffix

    def dead_letter_specs(self) -> tuple[TopicSpec, ...]:
        return tuple(
            TopicSpec(
                name=self.dead_letter_topic(spec.name),
                key=spec.key,
                value="(original bytes)",
                producer="any consumer of " + spec.name,
                partitions=1,
                replication_factor=spec.replication_factor,
                cleanup_policy="delete",
                retention_ms=self.dead_letter_retention_ms,
                doc=f"Records of {spec.name} that could not be processed, with the error in headers.",
            )
            for spec in self.topics
            if spec.is_avro
        )

    def schema_path(self, record_name: str) -> Path:
        return self.schemas_dir / "avro" / f"{record_name}.avsc"

    def schema_str(self, record_name: str) -> str:
        return self.schema_path(record_name).read_text()

    def schema(self, record_name: str) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.schema_str(record_name))
        return parsed


def load_catalogue(schemas_dir: Path) -> Catalogue:
    return _load(schemas_dir.resolve())


@cache
def _load(schemas_dir: Path) -> Catalogue:
    raw = tomllib.loads((schemas_dir / "catalogue.toml").read_text())
    defaults = raw.get("defaults", {})
    conventions = raw["conventions"]
    topics = tuple(
        TopicSpec(
            name=t["name"],
            key=t["key"],
            value=t["value"],
            producer=t["producer"],
            partitions=t.get("partitions", defaults["partitions"]),
            replication_factor=t.get("replication_factor", defaults["replication_factor"]),
            cleanup_policy=t.get("cleanup_policy", defaults["cleanup_policy"]),
            retention_ms=t.get("retention_ms", defaults["retention_ms"]),
            doc=t.get("doc", ""),
            value_format=t.get("value_format", "avro"),
            extra_config=tuple((k, str(v)) for k, v in sorted(t.get("config", {}).items())),
        )
        for t in raw["topic"]
    )
    return Catalogue(
        topics=topics,
        order_events_pattern=conventions["order_events_pattern"],
        dead_letter_suffix=conventions["dead_letter_suffix"],
        dead_letter_retention_ms=conventions["dead_letter_retention_ms"],
        schemas_dir=schemas_dir,
    )
