"""The read side: an in-memory view of the compacted cache topics, and the refresh requester.

`CacheView` holds the latest list per key of recommend.product-recs, recommend.customer-recs and
recommend.popular. `ViewFollower` fills it from a consumer thread that reads every partition of those
topics from offset 0 at start (no consumer group offsets: each API process rebuilds the whole view)
and follows them afterwards; the view counts as loaded once every partition reached its end once.
While loading, only the last record per key is kept (as bytes) and decoded at the end: a compacted topic
not yet cleaned may hold many superseded lists per key, and decoding is what costs.

`Refresher` sends RecommendationRefreshRequested for a stale entry, at most one in flight per key: a
key stays in flight until a list computed after the stale one arrives, or until `timeout` passes with
none (the stream app may be down; the next reader may ask again).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from eventkit.events import (
    CustomerRecommendationsUpdated,
    PopularProductsUpdated,
    RecommendationRefreshRequested,
    RecommendationsUpdated,
    RecommendedItem,
    utcnow,
)
from eventkit.producer import EventProducer
from eventkit.serde import AvroCodec, DeserializationError
from eventkit.settings import KafkaSettings
from recommend_service.topics import RecommendTopics

log = logging.getLogger("recommend.view")

Key = tuple[str, str]  # (kind, target): ("product", sku) | ("customer", id) | ("popular", "all")


@dataclass(frozen=True)
class Entry:
    items: tuple[RecommendedItem, ...]
    computed_at: datetime


class CacheView:
    def __init__(self, on_update: Callable[[Key, Entry], None] | None = None) -> None:
        self._entries: dict[Key, Entry] = {}
        self._lock = threading.Lock()
        self._on_update = on_update
        self.loaded = threading.Event()

    def get(self, kind: str, target: str) -> Entry | None:
        with self._lock:
            return self._entries.get((kind, target))

    def put(self, key: Key, entry: Entry | None) -> None:
        with self._lock:
            if entry is None:
                self._entries.pop(key, None)
            else:
                self._entries[key] = entry
        if entry is not None and self._on_update is not None:
            self._on_update(key, entry)

    def counts(self) -> dict[str, int]:
        with self._lock:
            kinds = [kind for kind, _ in self._entries]
        return {kind: kinds.count(kind) for kind in ("product", "customer", "popular")}


def key_and_entry(event: object) -> tuple[Key, Entry] | None:
    match event:
        case RecommendationsUpdated():
            return ("product", event.sku), Entry(event.items, event.computed_at)
        case CustomerRecommendationsUpdated():
            return ("customer", event.customer_id), Entry(event.items, event.computed_at)
        case PopularProductsUpdated():
            return ("popular", event.scope), Entry(event.items, event.computed_at)
    return None


_KIND_OF_TOPIC_VALUE = {
    RecommendationsUpdated.RECORD: "product",
    CustomerRecommendationsUpdated.RECORD: "customer",
    PopularProductsUpdated.RECORD: "popular",
}


class ViewFollower:
    """Reads the cache topics into a CacheView on a thread until `stop` is set."""

    def __init__(self, settings: KafkaSettings, topics: RecommendTopics, codec: AvroCodec, view: CacheView) -> None:
        self.topics = topics
        self.codec = codec
        self.view = view
        self.records = 0
        self.undecodable = 0
        self._kind = {t.name: _KIND_OF_TOPIC_VALUE[t.spec.value] for t in topics.caches}
        self._config = {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"recommend-api-{uuid.uuid4()}",  # required by the client; nothing is committed
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }

    def run(self, stop: threading.Event) -> None:
        """Read the cache topics from offset 0 into the view, then follow them, until `stop` is set."""
        self._consumer = Consumer(self._config)
        metadata = self._consumer.list_topics(timeout=15)
        partitions = [
            TopicPartition(t.name, p, OFFSET_BEGINNING)
            for t in self.topics.caches
            for p in metadata.topics[t.name].partitions
        ]
        pending_eof = {(tp.topic, tp.partition) for tp in partitions}
        loading: dict[tuple[str, bytes | None], bytes | None] | None = {}  # (topic, key) -> last value
        self._consumer.assign(partitions)
        try:
            while not stop.is_set():
                for msg in self._consumer.consume(1000, timeout=0.2):
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            pending_eof.discard((msg.topic(), msg.partition()))
                        else:
                            log.warning("cache topic consumer: %s", err.str())
                        continue
                    self.records += 1
                    if loading is not None:
                        loading[(msg.topic() or "", msg.key())] = msg.value()
                    else:
                        self._apply(msg.topic() or "", msg.key(), msg.value())
                if loading is not None and not pending_eof:
                    for (topic, key), value in loading.items():
                        self._apply(topic, key, value)
                    loading = None
                    self.view.loaded.set()
                    log.info("view loaded: %s from %d records", self.view.counts(), self.records)
        finally:
            self._consumer.close()

    def _apply(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        if value is None:  # a tombstone removes the key's list
            if key is not None:
                self.view.put((self._kind[topic], key.decode()), None)
            return
        try:
            event = self.codec.decode(value)
        except DeserializationError as exc:
            self.undecodable += 1
            log.warning("undecodable record on %s: %s", topic, exc)
            return
        found = key_and_entry(event)
        if found is not None:
            self.view.put(*found)


class Refresher:
    def __init__(self, producer: EventProducer, topic: str, timeout: float) -> None:
        self.producer = producer
        self.topic = topic
        self.timeout = timeout
        self.requested = 0
        self.failed = 0
        self._in_flight: dict[Key, tuple[float, datetime | None]] = {}
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def request(self, key: Key, stale_computed_at: datetime | None) -> bool:
        """Ask for a recomputation of `key` unless one is already in flight; True if this call asked.

        Call from the event loop: the request is sent by a task, the caller's answer never waits for it."""
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        with self._lock:
            current = self._in_flight.get(key)
            if current is not None and now - current[0] < self.timeout:
                return False
            self._in_flight[key] = (now, stale_computed_at)
            self.requested += 1
        kind, target = key
        event = RecommendationRefreshRequested(
            event_id=str(uuid.uuid4()),
            occurred_at=utcnow(),
            kind=kind,
            target=target,
            stale_computed_at=stale_computed_at,
        )
        task = loop.create_task(self._send(key, event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _send(self, key: Key, event: RecommendationRefreshRequested) -> None:
        try:
            await self.producer.send(self.topic, event.key, event)
        except Exception as exc:  # broker down: let the next reader ask again
            log.warning("refresh request for %s not sent: %s", key, exc)
            with self._lock:
                self.failed += 1
                self._in_flight.pop(key, None)

    def landed(self, key: Key, entry: Entry) -> None:
        """A list arrived: it answers the request in flight if it is newer than the stale one."""
        with self._lock:
            current = self._in_flight.get(key)
            if current is not None and (current[1] is None or entry.computed_at > current[1]):
                del self._in_flight[key]
