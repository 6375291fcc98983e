"""The consumer runner: decode, call the handler, produce its events, then store the offset.

An offset is stored only after the handler succeeded and everything it emitted was confirmed by the
broker (at-least-once; handlers are idempotent, and re-emitted events keep their derived ids).
A record that can't be decoded, or whose handler keeps failing, goes to `<topic>.dlq` with the
original bytes and the error in headers, and the loop moves on: one record never stops a partition.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from eventkit.events import Event, UnknownEvent
from eventkit.producer import CORRELATION_HEADER, EventProducer
from eventkit.serde import DeserializationError
from eventkit.settings import KafkaSettings

log = logging.getLogger("eventkit.consumer")


@dataclass(frozen=True)
class Received:
    """One decoded record, as a handler sees it."""

    topic: str
    partition: int
    offset: int
    key: str | None
    event: Event | UnknownEvent
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def correlation_id(self) -> str | None:
        return self.headers.get(CORRELATION_HEADER)


Handler = Callable[[Received], Sequence[Event]]


def consumer_config(settings: KafkaSettings, group_id: str, client_id: str) -> dict[str, object]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "group.id": group_id,
        "client.id": client_id,
        # A new service backfills the whole history of the topics it subscribes to.
        "auto.offset.reset": "earliest",
        # Offsets are stored by the runner after success and committed in the background / on close.
        "enable.auto.offset.store": False,
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 1000,
        "isolation.level": "read_committed",
        # Pattern subscriptions notice a new topic within seconds rather than the 5-minute default.
        "topic.metadata.refresh.interval.ms": 5000,
    }


@dataclass
class RunnerStats:
    processed: int = 0
    emitted: int = 0
    dead_lettered: int = 0
    retries: int = 0
    last_error: str | None = None
    running: bool = False


class ConsumerRunner:
    def __init__(
        self,
        *,
        settings: KafkaSettings,
        producer: EventProducer,
        service: str,
        group_id: str,
        handler: Handler,
        topics: Sequence[str] = (),
        pattern: str | None = None,
        batch_size: int = 200,
        on_confirmed: Callable[[list[str]], None] | None = None,
    ) -> None:
        if not topics and not pattern:
            raise ValueError("subscribe to topics or a pattern")
        self.producer = producer
        self.catalogue = producer.codec.catalogue
        self.service = service
        self.handler = handler
        self.subscriptions = [*topics, *([pattern] if pattern else [])]
        self.batch_size = batch_size
        self.on_confirmed = on_confirmed
        self.max_attempts = settings.handler_max_attempts
        self.backoff_seconds = settings.handler_backoff_seconds
        self.stats = RunnerStats()
        self._consumer = Consumer(consumer_config(settings, group_id, f"{service}-{group_id}"))

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set; the batch in flight is finished and its offsets committed."""
        self._consumer.subscribe(self.subscriptions, on_assign=self._on_assign)
        self.stats.running = True
        try:
            while not stop.is_set():
                # Wait for one record, then take whatever else is already fetched: batches under load,
                # no added latency when quiet (consume(n, timeout) would wait to fill the batch).
                first = self._consumer.poll(0.5)
                if first is None:
                    continue
                self._process_batch([first, *self._consumer.consume(self.batch_size - 1, timeout=0)])
        finally:
            self.stats.running = False
            self._consumer.close()  # commits the stored offsets

    def _process_batch(self, batch: list[Message]) -> None:
        done: list[Message] = []
        handled: list[str] = []
        for msg in batch:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.fatal():
                    raise KafkaException(err)
                log.warning("consumer error: %s", err.str())
                continue
            event_id = self._process(msg)
            if event_id:
                handled.append(event_id)
            done.append(msg)
        # Everything the handlers emitted must be acknowledged before their inputs count as consumed.
        try:
            self.producer.flush()
        except Exception:
            span = f"{_where(done[0])} .. {_where(done[-1])}" if done else "none"
            log.error("outputs of %d records not acknowledged (%s); not committing them", len(done), span)
            raise
        if self.on_confirmed is not None:
            self.on_confirmed(handled)
        for msg in done:
            self._consumer.store_offsets(message=msg)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        committed = consumer.committed(partitions, timeout=10)
        log.info("assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]@{tp.offset}" for tp in committed))

    def _process(self, msg: Message) -> str | None:
        """Handle one record; the id of the event handled, or None if it was dead-lettered."""
        raw_headers: list[tuple[str, bytes | None]] = list(msg.headers() or [])  # type: ignore[arg-type]
        headers = {k: _text(v) for k, v in raw_headers}
        try:
            event = self.producer.codec.decode(msg.value())
        except DeserializationError as exc:
            self._dead_letter(msg, exc, attempts=1)
            return None
        key = msg.key()
        received = Received(
            topic=_text(msg.topic()),
            partition=msg.partition() or 0,
            offset=msg.offset() or 0,
            key=_text(key) if key is not None else None,
            event=event,
            headers=headers,
        )
        for attempt in range(1, self.max_attempts + 1):
            try:
                # Encoding is part of the attempt: an output that can't be written is this record's failure.
                outputs = [(out, self._encode(out)) for out in self.handler(received)]
                break
            except Exception as exc:
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                if attempt == self.max_attempts:
                    log.exception("handler failed %d times; dead-lettering", attempt, extra=_ctx(received))
                    self._dead_letter(msg, exc, attempts=attempt)
                    return None
                self.stats.retries += 1
                time.sleep(self.backoff_seconds * 2 ** (attempt - 1))
        self.stats.processed += 1
        out_headers = [
            (CORRELATION_HEADER, (received.correlation_id or "").encode()),
            ("causation_id", getattr(event, "event_id", "").encode()),
            ("producer", self.service.encode()),
        ]
        for out, (topic, value) in outputs:
            self.producer.produce_raw(topic, out.key.encode(), value, out_headers)
            self.stats.emitted += 1
            log.info("emitted %s", out.RECORD, extra={**_ctx(received), "key": out.key})
        return getattr(event, "event_id", None)

    def _encode(self, event: Event) -> tuple[str, bytes]:
        topic = self.catalogue.topic_for(event.RECORD).name
        return topic, self.producer.codec.encode(topic, event)

    def _dead_letter(self, msg: Message, exc: Exception, attempts: int) -> None:
        self.stats.dead_lettered += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        headers = [
            *(msg.headers() or []),
            ("dlq.original.topic", _text(msg.topic()).encode()),
            ("dlq.original.partition", str(msg.partition()).encode()),
            ("dlq.original.offset", str(msg.offset()).encode()),
            ("dlq.error.class", type(exc).__name__.encode()),
            ("dlq.error.message", str(exc)[:2000].encode()),
            ("dlq.attempts", str(attempts).encode()),
            ("dlq.service", self.service.encode()),
        ]
        self.producer.produce_raw(self.catalogue.dead_letter_topic(_text(msg.topic())), msg.key(), msg.value(), headers)
        log.warning(
            "dead-lettered %s[%d]@%d: %s",
            msg.topic(),
            msg.partition(),
            msg.offset(),
            exc,
            extra={"service": self.service},
        )


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value or ""


def _where(msg: Message) -> str:
    return f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"


def _ctx(received: Received) -> dict[str, object]:
    return {
        "order_id": getattr(received.event, "order_id", received.key),
        "correlation_id": received.correlation_id,
        "event_type": getattr(received.event, "RECORD", None) or getattr(received.event, "record_name", None),
    }
