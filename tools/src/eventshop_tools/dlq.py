"""List and re-drive dead letters (`make dlq`, `make dlq-redrive`). Deliberately a CLI, not an HTTP API.

    python -m eventshop_tools.dlq list [--topic orders.placed]
    python -m eventshop_tools.dlq redrive [--topic orders.placed] [--dry-run]

`redrive` puts each dead letter's original bytes back on its original topic (dead-letter headers removed,
`dlq.redriven-from` added) and remembers how far it got in the consumer group `eventshop-dlq-redrive`, so a
record is re-driven once. Consumers deduplicate by event id, so services that had processed the record
before change nothing; a record that is still poison comes back to the dead-letter topic.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from eventkit.catalogue import Catalogue, load_catalogue
from eventkit.settings import KafkaSettings

REDRIVE_GROUP = "eventshop-dlq-redrive"


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    def header(self, name: str) -> str:
        for k, v in self.headers:
            if k == name:
                return v.decode(errors="replace")
        return ""


def dead_letter_topics(catalogue: Catalogue, topic: str | None) -> list[str]:
    names = [spec.name for spec in catalogue.dead_letter_specs()]
    if topic is not None:
        wanted = topic if topic.endswith(catalogue.dead_letter_suffix) else catalogue.dead_letter_topic(topic)
        if wanted not in names:
            raise SystemExit(f"dlq: {topic} has no dead-letter topic in the catalogue")
        return [wanted]
    return names


def read(settings: KafkaSettings, topics: list[str], group: str | None = None) -> Iterator[DeadLetter]:
    """Every record from the group's committed offsets (or the start) up to the current end."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": group or "eventshop-dlq-reader",
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = [
            TopicPartition(t, p) for t in topics for p in consumer.list_topics(t, timeout=10).topics[t].partitions
        ]
        starts = consumer.committed(partitions, timeout=10) if group else partitions
        ends = {(tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions}
        assignment = [TopicPartition(tp.topic, tp.partition, max(tp.offset, 0)) for tp in starts]
        pending = {(tp.topic, tp.partition) for tp in assignment if tp.offset < ends[(tp.topic, tp.partition)]}
        if not pending:
            return
        consumer.assign(assignment)
        while pending:
            msg: Message | None = consumer.poll(5)
            if msg is None:
                raise SystemExit("dlq: the broker stopped answering while reading dead letters")
            if msg.error():
                continue
            where = (msg.topic() or "", msg.partition() or 0)
            offset = msg.offset() or 0
            if offset + 1 >= ends[where]:
                pending.discard(where)
            yield DeadLetter(where[0], where[1], offset, msg.key(), msg.value(), list(msg.headers() or []))  # type: ignore[arg-type]
    finally:
        consumer.close()


def list_dead_letters(settings: KafkaSettings, topics: list[str]) -> int:
    count = 0
    print(f"{'dead letter':<34} {'original':<30} {'service':<11} {'tries':>5}  error")
    for dl in read(settings, topics):
        count += 1
        original = f"{dl.header('dlq.original.topic')}[{dl.header('dlq.original.partition')}]@" + dl.header(
            "dlq.original.offset"
        )
        error = f"{dl.header('dlq.error.class')}: {dl.header('dlq.error.message')}"
        print(
            f"{dl.topic}[{dl.partition}]@{dl.offset:<8} {original:<30} {dl.header('dlq.service'):<11} "
            f"{dl.header('dlq.attempts'):>5}  {error[:120]}"
        )
    print(f"{count} dead letter(s)")
    return count


def redrive(settings: KafkaSettings, topics: list[str], dry_run: bool) -> int:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "acks": "all",
                         "enable.idempotence": True})  # fmt: skip
    committer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": REDRIVE_GROUP,
                          "enable.auto.commit": False})  # fmt: skip
    done: dict[tuple[str, int], int] = {}
    seen: set[tuple[str, str, str]] = set()
    count = 0
    try:
        for dl in read(settings, topics, group=REDRIVE_GROUP):
            done[(dl.topic, dl.partition)] = dl.offset + 1
            # Several services dead-letter the same poison record: put it back once.
            origin = (dl.header("dlq.original.topic"), dl.header("dlq.original.partition"),
                      dl.header("dlq.original.offset"))  # fmt: skip
            if origin in seen:
                continue
            seen.add(origin)
            count += 1
            print(f"{'would re-drive' if dry_run else 're-drive'} {dl.topic}@{dl.offset} -> {origin[0]}")
            if not dry_run:
                headers: list[tuple[str, str | bytes | None]] = [
                    (k, v) for k, v in dl.headers if not k.startswith("dlq.")
                ]
                headers.append(("dlq.redriven-from", f"{dl.topic}[{dl.partition}]@{dl.offset}".encode()))
                producer.produce(origin[0], key=dl.key, value=dl.value, headers=headers)
        if not dry_run:
            if producer.flush(30):
                raise SystemExit("dlq: the broker did not confirm every re-driven record; nothing was marked done")
            if done:
                committer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in done.items()], asynchronous=False)
    finally:
        committer.close()
    print(f"{count} record(s) {'to re-drive' if dry_run else 're-driven'}")
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dlq", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["list", "redrive"])
    parser.add_argument("--topic", help="an original topic (or its .dlq); default: every dead-letter topic")
    parser.add_argument("--dry-run", action="store_true", help="redrive: show what would be re-driven")
    args = parser.parse_args(argv)
    settings = KafkaSettings()
    topics = dead_letter_topics(load_catalogue(settings.schemas_dir), args.topic)
    if args.command == "list":
        list_dead_letters(settings, topics)
    else:
        redrive(settings, topics, args.dry_run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
