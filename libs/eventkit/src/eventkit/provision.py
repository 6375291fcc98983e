"""Create every catalogue topic and register every value schema (`make schemas`, run by `make up`).

Idempotent: existing topics get their catalogue settings re-applied, an unchanged schema registers as
the same version. Compatibility is set to BACKWARD explicitly (Apicurio enforces nothing until told),
and an incompatible schema change stops with the registry's own reason.

    python -m eventkit.provision
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from eventkit.catalogue import Catalogue, TopicSpec, load_catalogue
from eventkit.settings import KafkaSettings

COMPATIBILITY = "BACKWARD"


class IncompatibleSchema(Exception):
    pass


@dataclass
class Report:
    created: list[str]
    updated: list[str]
    registered: dict[str, int]  # subject -> schema id


def ensure_topics(admin: AdminClient, specs: tuple[TopicSpec, ...]) -> tuple[list[str], list[str]]:
    existing = admin.list_topics(timeout=15).topics
    missing = [s for s in specs if s.name not in existing]
    created: list[str] = []
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, s.partitions, s.replication_factor, config=s.config()) for s in missing],
            operation_timeout=15,
        )
        for name, future in futures.items():
            try:
                future.result()
                created.append(name)
            except KafkaException as exc:
                if exc.args[0].code() != 36:  # TOPIC_ALREADY_EXISTS: a concurrent run made it
                    raise
    present = [s for s in specs if s.name in existing]
    if present:
        resources = [
            ConfigResource(
                ConfigResource.Type.TOPIC,
                s.name,
                incremental_configs=[
                    ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in s.config().items()
                ],
            )
            for s in present
        ]
        for future in admin.incremental_alter_configs(resources).values():
            future.result()
    return created, [s.name for s in present]


def register_schemas(registry: SchemaRegistryClient, catalogue: Catalogue) -> dict[str, int]:
    registry.set_compatibility(level=COMPATIBILITY)
    ids: dict[str, int] = {}
    for spec in catalogue.topics:
        if not spec.is_avro:
            continue  # e.g. a Faust changelog: its app's own serializer, no registry subject
        ids[spec.subject] = register(registry, spec.subject, catalogue.schema_str(spec.value))
    return ids


def register(registry: SchemaRegistryClient, subject: str, schema_str: str) -> int:
    """Register under `subject` with BACKWARD compatibility enforced; raise IncompatibleSchema with the
    registry's reason when the change would break readers."""
    schema = Schema(schema_str, "AVRO")
    subject_exists = subject in registry.get_subjects()
    if subject_exists:
        registry.set_compatibility(subject_name=subject, level=COMPATIBILITY)
    try:
        schema_id = registry.register_schema(subject, schema)
    except SchemaRegistryError as exc:
        if exc.http_status_code == 409:
            raise IncompatibleSchema(f"{subject}: {exc.error_message}") from exc
        raise
    if not subject_exists:
        registry.set_compatibility(subject_name=subject, level=COMPATIBILITY)
    return schema_id


def provision(settings: KafkaSettings) -> Report:
    catalogue = load_catalogue(settings.schemas_dir)
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    created, updated = ensure_topics(admin, catalogue.topics + catalogue.dead_letter_specs())
    registry = SchemaRegistryClient({"url": settings.schema_registry_url})
    return Report(created, updated, register_schemas(registry, catalogue))


def main() -> int:
    settings = KafkaSettings()
    try:
        report = provision(settings)
    except IncompatibleSchema as exc:
        print(f"schemas: incompatible change refused by the registry: {exc}", file=sys.stderr)
        return 1
    except (KafkaException, SchemaRegistryError) as exc:
        print(f"schemas: provisioning failed: {exc}", file=sys.stderr)
        return 1
    print(
        f"schemas: {len(report.created)} topics created, {len(report.updated)} already present; "
        f"{len(report.registered)} subjects registered with {COMPATIBILITY} compatibility"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
