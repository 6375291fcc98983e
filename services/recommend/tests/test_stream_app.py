"""The Faust app as built (no broker: building it opens no connection): its tables, changelogs and codecs."""

from __future__ import annotations

from pathlib import Path

from aiokafka.partitioner import DefaultPartitioner

from eventkit.catalogue import load_catalogue
from eventkit.serde import AvroCodec
from eventkit.settings import KafkaSettings
from recommend_service.settings import WorkerSettings
from recommend_service.stream import JSON_CODEC, KEY_CODEC, KeyHashedTable, create_stream_app
from recommend_service.topics import TABLES


def build(state_dir: Path, **overrides):
    catalogue = load_catalogue(KafkaSettings().schemas_dir)
    settings = WorkerSettings(state_dir=state_dir, **overrides)
    return catalogue, create_stream_app(settings, catalogue, AvroCodec.connect("http://127.0.0.1:9", catalogue))


def test_every_table_uses_its_catalogue_changelog_with_the_source_partition_count(tmp_path):
    catalogue, app = build(tmp_path)
    tables = {t.name: t for t in app.tables.values()}
    assert set(tables) == set(TABLES)
    for name, table in tables.items():
        spec = next(s for s in catalogue.produced_by("recommend") if s.value == name)
        assert spec.value_format == "faust-json" and spec.cleanup_policy == "compact"
        assert table.changelog_topic.get_topic_name() == spec.name
        assert table.partitions == spec.partitions == catalogue.topic("orders.placed").partitions
        assert isinstance(table, KeyHashedTable)


def test_a_key_always_goes_to_the_partition_kafka_would_pick_for_it(tmp_path):
    _, app = build(tmp_path)
    table = next(iter(app.tables.values()))
    partitioner = DefaultPartitioner()
    for key in ["85123A", "22423", "17850", "5b1f3c0e-8d7a-4c2b-9a61-0e6d2f4b7a10"]:
        expected = partitioner(key.encode(), [0, 1, 2], [0, 1, 2])
        assert table.partition_for_key(key) == expected  # the same whatever event is being processed


def test_the_benchmark_can_rename_every_topic(tmp_path):
    renamed = {"orders.placed": "bench.orders", "recommend.co-purchase-changelog": "bench.co"}
    _, app = build(tmp_path, recommend_topics=renamed)
    names = {t.changelog_topic.get_topic_name() for t in app.tables.values()}
    assert "bench.co" in names and "recommend.co-purchase-changelog" not in names
    assert "bench.orders" in {topic for agent in app.agents.values() for topic in agent.channel.topics}


def test_changelog_codecs_keep_big_integers_exact_and_keys_as_text():
    row = {"85123A": 2**90 + 12345, "22423": 1}
    assert JSON_CODEC.loads(JSON_CODEC.dumps(row)) == row
    assert KEY_CODEC.loads(KEY_CODEC.dumps("85123A")) == "85123A"


def test_faust_data_folder_is_under_the_state_dir_whose_parents_may_not_exist_yet(tmp_path):
    state_dir = tmp_path / "fresh" / "state"
    _, app = build(state_dir)
    datadir = Path(app.conf.datadir)
    assert datadir.parent == state_dir / "faust" and datadir.parent.is_dir()
    app._create_directories()  # what the worker does first on start; Faust makes only the last level
    assert datadir.is_dir()
