"""Run a real eventshop consumer service whose every batch reaches it `--delay-ms` late (bench only).

    python bench/slow_consumer.py shipping_service --delay-ms 200      (same env as the service: PORT, ...)

The "one downstream adds 200 ms" case of bench/async_vs_sync.py for the asynchronous arm: the service is
the real one (its code, consumer group, state, topics), only the Kafka consumer its runner creates hands
over each non-empty batch `--delay-ms` after librdkafka returned it, the way the synchronous arm's
stand-in answers each call 200 ms late. No service code changes: eventkit.consumer's `Consumer` is
replaced by a subclass before the service module runs.
"""

from __future__ import annotations

import argparse
import runpy
import sys
import time

from confluent_kafka import Consumer

import eventkit.consumer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", help="the service package run with -m, e.g. shipping_service")
    parser.add_argument("--delay-ms", type=float, default=200.0)
    args = parser.parse_args(argv)
    delay = args.delay_ms / 1000

    class LateConsumer(Consumer):
        def consume(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            batch = super().consume(*args, **kwargs)
            if batch:
                time.sleep(delay)
            return batch

    eventkit.consumer.Consumer = LateConsumer  # type: ignore[misc]
    sys.argv = [args.module]
    runpy.run_module(args.module, run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
