"""The platform on the real broker and registry: topics as catalogued, Avro through the registry,
compatibility enforced by the registry, poison records dead-lettered."""

from __future__ import annotations

import json
import struct
import uuid
from decimal import Decimal

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource
from confluent_kafka.schema_registry import SchemaRegistryClient
from fastavro import parse_schema, schemaless_reader

from eventkit.catalogue import Catalogue
from eventkit.events import LineItem, OrderPlaced, utcnow
from eventkit.producer import EventProducer
from eventkit.provision import IncompatibleSchema, register
from eventkit.serde import AvroCodec
from eventshop_tools.testing import Infra, eventually


@pytest.fixture(scope="module")
def registry(infra: Infra) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": infra.registry_url})


@pytest.fixture(scope="module")
def admin(infra: Infra) -> AdminClient:
    return AdminClient({"bootstrap.servers": infra.bootstrap_servers})


def read_back(infra: Infra, topic: str, partition: int, offset: int):
    consumer = Consumer({"bootstrap.servers": infra.bootstrap_servers, "group.id": f"t-{uuid.uuid4()}"})
    consumer.assign([TopicPartition(topic, partition, offset)])
    try:
        msg = eventually(lambda: consumer.poll(1.0), timeout=20)
    finally:
        consumer.close()
    assert msg.error() is None, msg.error()
    return msg


def test_every_catalogue_topic_exists_with_its_settings(admin: AdminClient, catalogue: Catalogue) -> None:
    specs = catalogue.topics + catalogue.dead_letter_specs()
    metadata = admin.list_topics(timeout=10).topics
    resources = [ConfigResource(ConfigResource.Type.TOPIC, s.name) for s in specs]
    configs = {r.name: f.result() for r, f in admin.describe_configs(resources).items()}
    for spec in specs:
        assert spec.name in metadata, f"{spec.name} missing"
        assert len(metadata[spec.name].partitions) == spec.partitions, spec.name
        assert configs[spec.name]["cleanup.policy"].value == spec.cleanup_policy, spec.name
        assert configs[spec.name]["retention.ms"].value == str(spec.retention_ms), spec.name
        for key, value in spec.extra_config:
            assert configs[spec.name][key].value == value, (spec.name, key)


def test_broker_refuses_topics_outside_the_catalogue(infra: Infra) -> None:
    producer = Producer({"bootstrap.servers": infra.bootstrap_servers, "message.timeout.ms": 3000})
    errors: list = []
    producer.produce(f"not-in-catalogue-{uuid.uuid4().hex}", b"x", on_delivery=lambda err, _m: errors.append(err))
    producer.flush(10)
    assert errors and errors[0] is not None, "auto topic creation must be off"


def test_every_value_schema_is_registered_with_backward_compatibility(
    registry: SchemaRegistryClient, catalogue: Catalogue
) -> None:
    subjects = set(registry.get_subjects())
    for spec in catalogue.topics:
        if not spec.is_avro:  # a Faust table's changelog: the app's own serializer, no subject
            assert spec.subject not in subjects
            continue
        assert spec.subject in subjects
        assert registry.get_compatibility(spec.subject) == "BACKWARD"
        latest = registry.get_latest_version(spec.subject)
        assert json.loads(latest.schema.schema_str)["name"] == spec.value


def test_event_round_trips_with_a_schema_id_the_registry_resolves(
    infra: Infra, registry: SchemaRegistryClient, catalogue: Catalogue
) -> None:
    codec = AvroCodec(registry, catalogue)
    producer = EventProducer(infra.settings(), codec, client_id="test")
    order_id = str(uuid.uuid4())
    event = OrderPlaced.create(
        order_id=order_id,
        customer_id="12346",
        currency="GBP",
        placed_at=utcnow(),
        items=(
            LineItem(sku="PADS", quantity=1, unit_price=Decimal("0.001")),
            LineItem(sku="85123A", quantity=6, unit_price=Decimal("2.55"), description="WHITE HANGING HEART"),
        ),
    )
    delivered = []
    topic = catalogue.topic_for("OrderPlaced").name
    producer.produce(topic, order_id, event, on_delivery=lambda err, msg: delivered.append((err, msg)))
    producer.flush(10)
    ((err, meta),) = delivered
    assert err is None
    msg = read_back(infra, topic, meta.partition(), meta.offset())
    raw = msg.value()
    magic, schema_id = struct.unpack(">bI", raw[:5])
    assert magic == 0
    writer = registry.get_schema(schema_id)
    assert json.loads(writer.schema_str)["name"] == "OrderPlaced"
    assert schema_id == registry.get_latest_version(f"{topic}-value").schema_id
    decoded = codec.decode(raw)
    assert decoded == event
    assert decoded.items[0].unit_price == Decimal("0.001")
    assert decoded.total == Decimal("15.301")
    assert msg.key().decode() == order_id


V1 = {
    "type": "record",
    "name": "Probe",
    "namespace": "eventshop.test",
    "fields": [{"name": "id", "type": "string"}, {"name": "amount", "type": "int"}],
}


def _with_fields(*fields: dict) -> str:
    return json.dumps({**V1, "fields": fields})


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(_with_fields({"name": "id", "type": "string"}, {"name": "total", "type": "int"}), id="rename"),
        pytest.param(_with_fields(*V1["fields"], {"name": "note", "type": "string"}), id="added-without-default"),
        pytest.param(_with_fields({"name": "id", "type": "string"}, {"name": "amount", "type": "string"}), id="type"),
    ],
)
def test_incompatible_change_is_refused_with_the_registrys_reason(
    registry: SchemaRegistryClient, unique: str, change: str
) -> None:
    subject = f"test.{unique}-value"
    register(registry, subject, json.dumps(V1))
    with pytest.raises(IncompatibleSchema) as refused:
        register(registry, subject, change)
    assert subject in str(refused.value)
    assert len(str(refused.value)) > len(subject) + 10, "the registry's reason is carried"
    assert len(registry.get_versions(subject)) == 1


def test_compatible_change_is_accepted_and_old_readers_read_new_data(
    registry: SchemaRegistryClient, unique: str
) -> None:
    subject = f"test.{unique}-value"
    register(registry, subject, json.dumps(V1))
    v2 = _with_fields(*V1["fields"], {"name": "note", "type": "string", "default": "none"})
    new_id = register(registry, subject, v2)
    assert len(registry.get_versions(subject)) == 2

    import io

    from fastavro import schemaless_writer

    writer = parse_schema(json.loads(registry.get_schema(new_id).schema_str))
    buf = io.BytesIO()
    schemaless_writer(buf, writer, {"id": "a", "amount": 3, "note": "hello"})
    buf.seek(0)
    old_reader = parse_schema(V1)
    assert schemaless_reader(buf, writer, old_reader) == {"id": "a", "amount": 3}
