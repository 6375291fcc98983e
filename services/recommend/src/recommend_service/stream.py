"""The recommend stream app: a Faust app built by `create_stream_app()` (never at import time).

Topology (one worker process; see README.md for why and how to scale it out)::

    orders.placed ──agent score_orders──> tables co_purchase, popularity, customer_recent, seen_orders
                                           (memory:// store, each backed by a compacted changelog topic)
                         │                    │
                         └─ per batch ─> recommend.product-recs   (key sku,          compacted)
                                         recommend.customer-recs  (key customer_id,  compacted)
                                         recommend.popular        (key "all",        compacted)
    recommend.refresh-requested ──agent serve_refreshes──> recompute one key from the tables, republish

Serialization: eventshop topics carry Avro in the Confluent wire format. Their Faust topics are raw
bytes, and the agents decode/encode with `eventkit.serde.AvroCodec` at the edge (agents see events,
never bytes). The tables' changelogs use Faust's codec mechanism with stdlib JSON (`JSON_CODEC`;
integers of any size stay exact) and UTF-8 string keys (`KEY_CODEC`): they are the app's private state,
declared in the catalogue with value_format "faust-json" and no registry subject.

Table keys go to the changelog partition chosen by the key's hash (`KeyHashedTable`), not by the
partition of the order that changed them (Faust's default): an order (keyed by order id) updates many
skus, and a key written to different partitions over time could be restored to an older value.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import faust
from aiokafka.partitioner import murmur2
from faust.serializers.codecs import Codec

from eventkit.catalogue import Catalogue
from eventkit.events import Event, OrderPlaced, RecommendationRefreshRequested
from eventkit.serde import AvroCodec, DeserializationError
from recommend_service.model import RecommendationState
from recommend_service.settings import WorkerSettings
from recommend_service.topics import SERVICE, RecommendTopics, Topic

log = logging.getLogger("recommend.stream")


class JsonCodec(Codec):
    """Table values as stdlib JSON (exact big integers; faust's 'json' may use orjson, limited to 64 bits)."""

    def _dumps(self, s: Any) -> bytes:
        return json.dumps(s, separators=(",", ":")).encode()

    def _loads(self, s: bytes) -> Any:
        return json.loads(s)


class KeyCodec(Codec):
    """Table keys as UTF-8 text (faust's 'raw' would give bytes back on recovery)."""

    def _dumps(self, s: Any) -> bytes:
        return s.encode() if isinstance(s, str) else bytes(s)

    def _loads(self, s: bytes) -> str:
        return s.decode()


JSON_CODEC, KEY_CODEC = JsonCodec(), KeyCodec()


class KeyHashedTable(faust.Table):
    """A table whose changelog partition is the key's murmur2 hash (Kafka's default partitioner), never
    the partition of the event that changed it. Computed here rather than by the producer, which would
    need metadata for a topic this app does not declare."""

    def partition_for_key(self, key: Any) -> int:
        assert self.partitions, "declare the table with its changelog's partition count"
        return (murmur2(KEY_CODEC.dumps(key)) & 0x7FFFFFFF) % self.partitions


@dataclass
class StreamStats:
    orders_received: int = 0
    orders_counted: int = 0  # received minus redeliveries
    orders_done: int = 0  # received and their lists confirmed by the broker
    batches: int = 0
    published: int = 0
    refreshes_served: int = 0
    refreshes_skipped: int = 0
    undecodable: int = 0
    scoring_seconds: float = 0.0  # time in RecommendationState (apply + outputs), tables included
    first_order_at: float | None = None  # time.time() of the first order this process received
    last_batch_done_at: float | None = None  # ... when the latest batch's outputs were confirmed


def create_stream_app(settings: WorkerSettings, catalogue: Catalogue, codec: AvroCodec) -> faust.App:
    topics = RecommendTopics.from_catalogue(catalogue, settings.recommend_topics)
    # Faust keeps a per-app data folder and creates only its last level; beside the other services' state.
    faust_dir = settings.state_dir / "faust"
    faust_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.recommend_app_id,
        broker=f"kafka://{settings.kafka_bootstrap_servers}",
        store="memory://",
        # Topics come only from the catalogue (provisioning creates them); the app declares nothing.
        topic_allow_declare=False,
        topic_disable_leader=True,
        topic_partitions=topics.orders.spec.partitions,
        consumer_auto_offset_reset="earliest",  # a new app id backfills the whole order history
        producer_acks=-1,
        producer_linger=settings.recommend_producer_linger,
        producer_max_batch_size=settings.recommend_producer_batch_bytes,
        web_enabled=True,
        web_bind=settings.host,
        web_port=settings.port,
        web_host=settings.host,
        key_serializer=KEY_CODEC,
        value_serializer="raw",
        datadir=str(faust_dir / "{conf.name}-data"),
    )
    stats = StreamStats()

    def raw_topic(topic: Topic) -> faust.TopicT:
        return app.topic(topic.name, key_serializer="raw", value_serializer="raw", allow_empty=True)

    def table(name: str) -> faust.Table:
        changelog = topics.changelogs[name]
        faust_table = KeyHashedTable(
            app,
            name=name,
            default=None,
            beacon=app.tables.beacon,
            partitions=changelog.spec.partitions,
            changelog_topic=app.topic(
                changelog.name,
                key_serializer=KEY_CODEC,
                value_serializer=JSON_CODEC,
                partitions=changelog.spec.partitions,
                compacting=True,
                acks=False,  # not consumed by an agent: no offsets to commit for it
                internal=True,
                allow_empty=True,
            ),
        )
        # what the table writes with (it would derive "json" from its value type otherwise)
        faust_table.key_serializer, faust_table.value_serializer = KEY_CODEC, JSON_CODEC
        app.tables.add(faust_table)
        return faust_table

    tables = {name: table(name) for name in ("co_purchase", "popularity", "customer_recent", "seen_orders")}
    state = RecommendationState(**tables)
    orders_in, refresh_in = raw_topic(topics.orders), raw_topic(topics.refresh)
    dead_letters = app.topic(
        catalogue.dead_letter_topic(topics.orders.name), key_serializer="raw", value_serializer="raw"
    )
    outputs = {t.spec.value: (t, raw_topic(t)) for t in topics.caches}

    async def publish(events: Sequence[Event]) -> None:
        """Send the lists and wait until the broker has confirmed every one."""
        pending = []
        for event in events:
            topic, faust_topic = outputs[event.RECORD]
            # Encoded for the catalogue topic's subject; sent under the name in use (they differ only in benchmarks).
            value = codec.encode(topic.spec.name, event)
            pending.append(await faust_topic.send(key=event.key.encode(), value=value))
        if pending:
            await asyncio.gather(*pending)
        stats.published += len(events)

    def decode_orders(events: Sequence[faust.EventT]) -> list[OrderPlaced]:
        orders = []
        for event in events:
            try:
                decoded = codec.decode(event.value)
            except DeserializationError as exc:
                dead_letter(event, exc)
                continue
            if isinstance(decoded, OrderPlaced):
                orders.append(decoded)
        return orders

    def dead_letter(event: faust.EventT, exc: Exception) -> None:
        """Same headers as eventkit's consumer runner; the record keeps its original bytes."""
        stats.undecodable += 1
        msg = event.message
        log.warning("undecodable record %s[%d]@%d: %s; dead-lettered", msg.topic, msg.partition, msg.offset, exc)
        headers = [
            *(msg.headers or []),
            ("dlq.original.topic", msg.topic.encode()),
            ("dlq.original.partition", str(msg.partition).encode()),
            ("dlq.original.offset", str(msg.offset).encode()),
            ("dlq.error.class", type(exc).__name__.encode()),
            ("dlq.error.message", str(exc)[:2000].encode()),
            ("dlq.attempts", b"1"),
            ("dlq.service", SERVICE.encode()),
        ]
        dead_letters.send_soon(key=msg.key, value=msg.value, headers=headers)

    @app.agent(orders_in, name="score_orders")
    async def score_orders(stream: faust.StreamT[bytes]) -> None:
        batches = stream.take_events(settings.recommend_batch_max, within=settings.recommend_batch_within)  # type: ignore[attr-defined]
        async for events in batches:
            if stats.first_order_at is None:
                stats.first_order_at = time.time()
            orders = decode_orders(events)
            began = time.perf_counter()
            touched = state.apply(orders)
            outputs = state.outputs(touched)
            stats.scoring_seconds += time.perf_counter() - began
            stats.orders_received += len(events)
            stats.orders_counted += touched.orders
            await publish(outputs)
            stats.orders_done += len(events)
            stats.batches += 1
            stats.last_batch_done_at = time.time()

    @app.agent(refresh_in, name="serve_refreshes")
    async def serve_refreshes(stream: faust.StreamT[bytes]) -> None:
        async for value in stream:
            try:
                request = codec.decode(value)
            except DeserializationError as exc:
                log.warning("undecodable refresh request: %s", exc)
                continue
            if not isinstance(request, RecommendationRefreshRequested):
                continue
            answer = state.refresh(request)
            if answer is None:
                stats.refreshes_skipped += 1
                log.info("refresh of unknown %s %s skipped", request.kind, request.target)
                continue
            await publish([answer])
            stats.refreshes_served += 1

    @app.page("/health")
    async def health(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        try:
            assigned = sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == topics.orders.name)
        except Exception:  # the consumer is not started yet
            assigned = []
        complete = len(assigned) == topics.orders.spec.partitions
        ok = recovered and complete and not app.rebalancing
        body = {
            "service": "recommend-worker",
            "status": "ok" if ok else ("recovering" if not recovered else "partial-assignment"),
            "orders_partitions": assigned,
            "table_sizes": {name: len(t) for name, t in tables.items()},
            "stream": asdict(stats),
        }
        return web.json(body, status=200 if ok else 503)

    return app
