"""The one way eventshop writes to Kafka: acks=all, idempotent, every delivery report checked."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping

from confluent_kafka import KafkaError, Message, Producer

from eventkit.events import Event
from eventkit.serde import AvroCodec
from eventkit.settings import KafkaSettings

CORRELATION_HEADER = "correlation_id"
# Consumer services produce a batch, then flush it: a few ms of linger packs the batch. The HTTP edge
# awaits each record's own ack, so there linger adds straight to the answer; under load records still
# batch while earlier requests are in flight.
BATCH_LINGER_MS = 5
EDGE_LINGER_MS = 0


class DeliveryError(Exception):
    """The broker did not confirm a record (timed out, or refused it)."""


def producer_config(settings: KafkaSettings, client_id: str, linger_ms: int = BATCH_LINGER_MS) -> dict[str, object]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "client.id": client_id,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": linger_ms,
        "compression.type": "lz4",
        "message.timeout.ms": settings.delivery_timeout_ms,
    }


class EventProducer:
    """Encodes events with the registry and produces them keyed, with string headers.

    Two ways to wait for the broker: `produce()` + `flush()` (a batch, used by consumer services), and
    `await send()` (one record, used by the HTTP edge; a background thread serves delivery reports).
    """

    def __init__(
        self, settings: KafkaSettings, codec: AvroCodec, client_id: str, linger_ms: int = BATCH_LINGER_MS
    ) -> None:
        self.codec = codec
        self._producer = Producer(producer_config(settings, client_id, linger_ms))
        self._failures: list[str] = []
        self._lock = threading.Lock()
        self._poller: threading.Thread | None = None
        self._closing = threading.Event()

    def produce(
        self, topic: str, key: str, event: Event, headers: Mapping[str, str] | None = None, on_delivery=None
    ) -> None:
        """Queue one record; `flush()` raises if any queued record was not confirmed."""
        value = self.codec.encode(topic, event)
        self._producer.produce(
            topic,
            key=key.encode(),
            value=value,
            headers=[(k, v.encode()) for k, v in (headers or {}).items()],
            on_delivery=on_delivery or self._record_failure,
        )
        self._producer.poll(0)

    def produce_raw(self, topic: str, key: bytes | None, value: bytes | None, headers: list) -> None:
        """Queue bytes as they are (dead letters keep the original record)."""
        self._producer.produce(topic, key=key, value=value, headers=headers, on_delivery=self._record_failure)
        self._producer.poll(0)

    def flush(self, timeout: float | None = None) -> None:
        remaining = self._producer.flush(timeout if timeout is not None else -1)
        with self._lock:
            failures, self._failures = self._failures, []
        if remaining:
            failures.append(f"{remaining} record(s) still unconfirmed after flush")
        if failures:
            raise DeliveryError("; ".join(failures[:5]))

    async def send(self, topic: str, key: str, event: Event, headers: Mapping[str, str] | None = None) -> None:
        """Produce one record and return once the broker confirmed it (or raise DeliveryError)."""
        self._ensure_poller()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                loop.call_soon_threadsafe(_resolve, done, None)
            else:
                loop.call_soon_threadsafe(_resolve, done, DeliveryError(f"{msg.topic()}: {err.str()}"))

        self.produce(topic, key, event, headers, on_delivery=on_delivery)
        await done

    def close(self, timeout: float = 10.0) -> None:
        self._closing.set()
        if self._poller is not None:
            self._poller.join(timeout=2)
        self._producer.flush(timeout)

    def _record_failure(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            with self._lock:
                self._failures.append(f"{msg.topic()}: {err.str()}")

    def _ensure_poller(self) -> None:
        if self._poller is None:
            self._poller = threading.Thread(target=self._poll_forever, name="producer-poll", daemon=True)
            self._poller.start()

    def _poll_forever(self) -> None:
        while not self._closing.is_set():
            self._producer.poll(0.1)


def _resolve(future: asyncio.Future[None], error: Exception | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
