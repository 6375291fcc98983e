"""The Avro schemas, the topic catalogue and the event dataclasses agree with each other (no registry)."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import types
import typing
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from eventkit.catalogue import load_catalogue
from eventkit.events import EVENT_TYPES, LineItem, OrderPlaced, RecommendedItem, Shortfall, StockLine

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"
AVSC = sorted((SCHEMAS / "avro").glob("*.avsc"))
CATALOGUE = load_catalogue(SCHEMAS)
NESTED = {"LineItem": LineItem, "StockLine": StockLine, "Shortfall": Shortfall, "RecommendedItem": RecommendedItem}


def schema_of(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / "avro" / f"{name}.avsc").read_text())


def records_in(schema: Any) -> list[dict[str, Any]]:
    """Every record schema in `schema`, outermost first."""
    found: list[dict[str, Any]] = []
    if isinstance(schema, dict):
        if schema.get("type") == "record":
            found.append(schema)
            for f in schema["fields"]:
                found += records_in(f["type"])
        elif schema.get("type") == "array":
            found += records_in(schema["items"])
        elif schema.get("type") == "map":
            found += records_in(schema["values"])
    elif isinstance(schema, list):
        for branch in schema:
            found += records_in(branch)
    return found


def avro_fields(record: dict[str, Any]) -> list[tuple[str, bool]]:
    return [(f["name"], "default" in f) for f in record["fields"]]


def dataclass_fields(cls: type) -> list[tuple[str, bool]]:
    return [
        (f.name, f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING)
        for f in dataclasses.fields(cls)
    ]


# -- dataclasses <-> .avsc ------------------------------------------------------------------------------


def test_event_types_and_schema_files_are_the_same_set():
    assert set(EVENT_TYPES) == {p.stem for p in AVSC}
    for name, cls in EVENT_TYPES.items():
        assert name == cls.RECORD


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_dataclass_has_exactly_the_fields_of_its_schema(name):
    cls = EVENT_TYPES[name]
    schema = schema_of(name)
    assert schema["name"] == name
    assert set(dataclass_fields(cls)) == set(avro_fields(schema))
    # and in the same order (the schema's order is the wire order; the dataclass mirrors it)
    assert dataclass_fields(cls) == avro_fields(schema)


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_nested_records_match_their_dataclasses(name):
    for record in records_in(schema_of(name))[1:]:
        cls = NESTED[record["name"]]
        assert dataclass_fields(cls) == avro_fields(record), record["name"]


def _avro_kind(avro_type: Any) -> str:
    if isinstance(avro_type, list):
        others = [t for t in avro_type if t != "null"]
        assert len(others) == 1, avro_type
        return "optional " + _avro_kind(others[0])
    if isinstance(avro_type, dict):
        logical = avro_type.get("logicalType")
        if logical == "decimal":
            return "decimal"
        if logical == "timestamp-millis":
            return "datetime"
        if avro_type["type"] == "array":
            return "array of " + _avro_kind(avro_type["items"])
        if avro_type["type"] == "record":
            return "record " + avro_type["name"]
        return _avro_kind(avro_type["type"])
    return {"string": "str", "int": "int", "long": "int", "boolean": "bool", "double": "float"}[avro_type]


def _py_kind(hint: Any) -> str:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        others = [a for a in typing.get_args(hint) if a is not type(None)]
        assert len(others) == 1, hint
        return "optional " + _py_kind(others[0])
    if typing.get_origin(hint) is tuple:
        item, ellipsis = typing.get_args(hint)
        assert ellipsis is Ellipsis
        return "array of " + _py_kind(item)
    if hint is Decimal:
        return "decimal"
    if hint is datetime:
        return "datetime"
    if dataclasses.is_dataclass(hint):
        return "record " + hint.__name__
    return {str: "str", int: "int", bool: "bool", float: "float"}[hint]


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_field_types_correspond(name):
    cls = EVENT_TYPES[name]
    pairs = [(cls, schema_of(name))] + [(NESTED[r["name"]], r) for r in records_in(schema_of(name))[1:]]
    for klass, record in pairs:
        hints = typing.get_type_hints(klass)
        for f in record["fields"]:
            assert _py_kind(hints[f["name"]]) == _avro_kind(f["type"]), (klass.__name__, f["name"])


# -- the .avsc files themselves -------------------------------------------------------------------------


@pytest.mark.parametrize("path", AVSC, ids=[p.stem for p in AVSC])
def test_schema_parses_and_is_documented(path):
    schema = json.loads(path.read_text())
    parse_schema(schema)
    assert schema["type"] == "record"
    assert schema["name"] == path.stem
    assert schema["namespace"] == "eventshop.events"
    for record in records_in(schema):
        assert record.get("doc"), f"{path.stem}: record {record['name']} has no doc"
        for f in record["fields"]:
            assert f.get("doc"), f"{path.stem}: field {record['name']}.{f['name']} has no doc"


@pytest.mark.parametrize("path", AVSC, ids=[p.stem for p in AVSC])
def test_every_event_starts_with_the_common_fields(path):
    names = [f["name"] for f in json.loads(path.read_text())["fields"]]
    assert names[:2] == ["event_id", "occurred_at"]
    # order-scoped events (those on order-keyed topics) carry the order id third
    if CATALOGUE.topic_for(path.stem).key == "order_id":
        assert names[2] == "order_id"


def test_nested_record_definitions_agree_across_files():
    seen: dict[str, dict[str, Any]] = {}
    for path in AVSC:
        for record in records_in(json.loads(path.read_text()))[1:]:
            assert seen.setdefault(record["name"], record) == record, record["name"]


# -- catalogue ------------------------------------------------------------------------------------------


def test_every_topic_value_has_a_schema_file():
    for spec in CATALOGUE.topics:
        if not spec.is_avro:
            # a Faust table's changelog: Faust's own serializer, compacted, written only by its app
            assert spec.value_format == "faust-json" and spec.cleanup_policy == "compact", spec.name
            assert not CATALOGUE.schema_path(spec.value).exists(), spec.name
            continue
        assert CATALOGUE.schema_path(spec.value).is_file(), spec.name
        assert CATALOGUE.schema(spec.value)["name"] == spec.value


def test_every_schema_file_is_used_by_exactly_one_topic():
    for path in AVSC:
        users = [spec.name for spec in CATALOGUE.topics if spec.value == path.stem]
        assert len(users) == 1, (path.stem, users)
        assert CATALOGUE.topic_for(path.stem).name == users[0]


def test_topic_names_are_unique():
    names = [spec.name for spec in CATALOGUE.topics]
    assert len(names) == len(set(names))


def test_order_keyed_topics_match_the_order_events_pattern():
    pattern = re.compile(CATALOGUE.order_events_pattern)
    order_keyed = [spec for spec in CATALOGUE.topics if spec.key == "order_id"]
    assert order_keyed, "no order-keyed topics"
    for spec in CATALOGUE.topics:
        if not spec.is_avro:
            continue  # a table changelog keyed by order id is state, not an order event for the timeline
        assert bool(pattern.search(spec.name)) == (spec.key == "order_id"), spec.name


def test_dead_letter_topics_do_not_match_the_order_events_pattern():
    pattern = re.compile(CATALOGUE.order_events_pattern)
    dead = CATALOGUE.dead_letter_specs()
    assert len(dead) == len([spec for spec in CATALOGUE.topics if spec.is_avro])
    for spec in dead:
        assert spec.name.endswith(CATALOGUE.dead_letter_suffix)
        assert not pattern.search(spec.name), spec.name


def test_pattern_is_anchored_so_lookalikes_do_not_match():
    pattern = re.compile(CATALOGUE.order_events_pattern)
    assert pattern.search("orders.loyalty-points")  # a future service's topic joins the timeline
    for name in ["xorders.placed", "orders.placed.dlq", "orders.", "orders.Placed", "orders_placed"]:
        assert not pattern.search(name), name


def test_every_producer_is_a_known_service():
    assert {spec.producer for spec in CATALOGUE.topics} <= {"order", "accounting", "inventory", "shipping", "recommend"}


# -- money ----------------------------------------------------------------------------------------------


def _money_fields() -> list[tuple[str, str, Any]]:
    found = []
    for path in AVSC:
        for record in records_in(json.loads(path.read_text())):
            for f in record["fields"]:
                found.append((path.stem, f"{record['name']}.{f['name']}", f["type"]))
    return found


def test_money_fields_are_avro_decimals_with_scale_3():
    decimals = [(where, field, t) for where, field, t in _money_fields() if _avro_kind(t) == "decimal"]
    assert {field for _, field, _ in decimals} == {
        "LineItem.unit_price",
        "PaymentCaptured.amount",
        "PaymentDeclined.amount",
        "PaymentRefunded.amount",
    }
    for where, field, t in decimals:
        assert t == {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 3}, (where, field)
    # and every Decimal in the dataclasses is one of them (no money as string or float anywhere)
    for cls in [*EVENT_TYPES.values(), *NESTED.values()]:
        for fname, hint in typing.get_type_hints(cls).items():
            if hint is Decimal:
                assert f"{cls.__name__}.{fname}" in {field for _, field, _ in decimals}


def test_order_placed_round_trips_exact_prices():
    event = OrderPlaced(
        event_id="0f1e2d3c-4b5a-4968-8776-655443322110",
        occurred_at=datetime(2010, 12, 1, 8, 26, 0, 123000, tzinfo=UTC),
        order_id="1f2e3d4c-5b6a-4789-8abc-def012345678",
        customer_id="17850",
        currency="GBP",
        country=None,
        placed_at=datetime(2010, 12, 1, 8, 26, tzinfo=UTC),
        items=(
            LineItem(sku="TINY", quantity=3, unit_price=Decimal("0.001")),
            LineItem(sku="BIG", quantity=1, unit_price=Decimal("38970.0"), description="MANUAL"),
        ),
    )
    schema = parse_schema(schema_of("OrderPlaced"))
    buf = io.BytesIO()
    schemaless_writer(buf, schema, event.to_record())
    buf.seek(0)
    record = schemaless_reader(buf, schema, schema)
    prices = [item["unit_price"] for item in record["items"]]
    assert prices == [Decimal("0.001"), Decimal("38970.0")]
    assert [str(p) for p in prices] == ["0.001", "38970.000"]
    assert all(p.as_tuple().exponent == -3 for p in prices)
    back = OrderPlaced.from_record(record)
    assert back == event
    assert back.total == Decimal("38970.003")
    assert back.occurred_at == event.occurred_at
