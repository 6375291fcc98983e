"""Push each order's events to the clients that follow it: the hub and one follower's stream.

Transport-free (plain asyncio); `streams` puts it on WebSocket and Server-Sent Events.

The consumer thread commits a timeline row, then tells the hub (`notify_threadsafe`); the hub hands the
row, on the event loop, to every follower of that order. A follower never misses the rows committed
between the 202 and its subscription, nor sends one twice:
  1. subscribe: from now on every committed row of the order is queued for this follower;
  2. read the stored timeline: every row committed before step 1, and perhaps some queued ones too;
  3. send the stored rows after the client's last seen one, then the queued rows whose `seq` is greater
     than the last sent (a row both read and queued is sent once).
`seq` is this instance's arrival order (one consumer thread commits rows in `seq` order), so the stream
is in arrival order: the order a late follower replays from the store is the order a live one saw.
A follower ends with a `final` message once the order is dispatched or cancelled (`view.status_of`) and
its story is complete (`view.awaited`: e.g. a cancellation's refund, or a payment decision that reached
the view after the final event), waited for at most `final_wait_seconds`; a row that comes later still
is in GET /orders/{id} only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from order_service.view import Snapshot, Stored, awaited, status_of

Reader = Callable[[str, str | None], Snapshot]  # (order_id, after_event_id) -> what is stored; blocking


class UnknownOrder(Exception):
    """This instance has heard nothing of the order, not even after waiting a little."""


class TooSlow(Exception):
    """The client fell too far behind; it may reconnect with the last event id it got."""


@dataclass(frozen=True)
class Push:
    """One message to a client: a timeline entry (`event`), the last one (`final`), or a heartbeat."""

    kind: Literal["event", "final", "ping"]
    text: str  # JSON object
    event_id: str | None = None
    committed_at: float | None = None  # of a live row: when the view committed it


PING = Push("ping", json.dumps({"type": "ping"}))


def final_push(order_id: str, status: str) -> Push:
    return Push("final", json.dumps({"type": "final", "order_id": order_id, "status": status, "final": True}))


class Subscription:
    """The rows of one order not yet taken by one follower; bounded, and never blocks the publisher."""

    __slots__ = ("_items", "_wake", "limit", "order_id", "overflowed", "stopped")

    def __init__(self, order_id: str, limit: int) -> None:
        self.order_id = order_id
        self.limit = limit
        self._items: deque[Stored] = deque()
        self._wake = asyncio.Event()
        self.overflowed = False
        self.stopped = False

    def offer(self, row: Stored) -> bool:
        """Queue `row`; False when the queue was full (the follower is then cut off, its queue dropped)."""
        if self.overflowed or self.stopped:
            return True
        if len(self._items) >= self.limit:
            self.overflowed = True
            self._items.clear()
            self._wake.set()
            return False
        self._items.append(row)
        self._wake.set()
        return True

    def stop(self) -> None:
        self.stopped = True
        self._wake.set()

    async def next(self, timeout: float) -> Stored | None:
        """The next queued row; None after `timeout` seconds without one, or once stopped."""
        while not self.stopped:
            if self.overflowed:
                raise TooSlow(f"fell more than {self.limit} events behind")
            if self._items:
                return self._items.popleft()
            self._wake.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                return None
        return None


class PushHub:
    """Who follows which order, in one process. Every method but `notify_threadsafe` runs on the loop."""

    def __init__(self, queue_limit: int = 256) -> None:
        self.queue_limit = queue_limit
        self._followers: dict[str, set[Subscription]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.dropped = 0  # followers cut off for falling behind
        self.closing = False
        self._count = 0
        # Recent delays, for /health and the benchmark: event occurred -> row committed (what GET shows),
        # and row committed -> message handed to a client's socket.
        self.view_lag_ms: deque[float] = deque(maxlen=10_000)
        self.push_lag_ms: deque[float] = deque(maxlen=10_000)

    def subscribe(self, order_id: str) -> Subscription:
        self._loop = asyncio.get_running_loop()
        sub = Subscription(order_id, self.queue_limit)
        self._followers.setdefault(order_id, set()).add(sub)
        self._count += 1
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        sub.stop()
        followers = self._followers.get(sub.order_id)
        if followers is not None and sub in followers:
            followers.discard(sub)
            self._count -= 1
            if not followers:
                del self._followers[sub.order_id]

    def publish(self, row: Stored) -> None:
        if row.committed_at is not None:
            with contextlib.suppress(ValueError):
                occurred = datetime.fromisoformat(row.occurred_at).timestamp()
                self.view_lag_ms.append((row.committed_at - occurred) * 1000)
        for sub in tuple(self._followers.get(row.order_id, ())):
            if not sub.offer(row):
                self.dropped += 1

    def notify_threadsafe(self, row: Stored) -> None:
        """From any thread, after `row` committed. Rows of orders nobody follows cost nothing here: a
        follower that subscribes later reads them from the store (it subscribes before it reads)."""
        loop = self._loop
        if loop is None or row.order_id not in self._followers:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed: the process is stopping
            loop.call_soon_threadsafe(self.publish, row)

    def close(self) -> None:
        """The service stops: every follower's stream ends (its connection is closed with 1001)."""
        self.closing = True
        for followers in tuple(self._followers.values()):
            for sub in tuple(followers):
                sub.stop()

    def sent(self, push: Push) -> None:
        """A transport handed `push` to a client's socket."""
        if push.committed_at is not None:
            self.push_lag_ms.append((time.time() - push.committed_at) * 1000)

    def stats(self) -> dict[str, object]:
        """Counts, and the recent delays (safe to read from another thread)."""
        return {
            "followers": self._count,
            "orders_followed": len(self._followers),
            "dropped_slow": self.dropped,
            "view_lag_ms": _summary(list(self.view_lag_ms)),
            "push_lag_ms": _summary(list(self.push_lag_ms)),
        }


def _could_be_an_order_id(text: str) -> bool:
    """Order ids are UUIDs (random, or derived from an Idempotency-Key): nothing else is waited for."""
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _summary(values: list[float]) -> dict[str, float | int | None]:
    ordered = sorted(values)

    def rank(q: float) -> float | None:  # nearest rank
        return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 1) if ordered else None

    return {"n": len(ordered), "p50": rank(0.5), "p99": rank(0.99)}


class Follower:
    """One client following one order: `open()`, then iterate `messages()`, then `close()`."""

    def __init__(
        self,
        hub: PushHub,
        read: Reader,
        order_id: str,
        after_event_id: str | None = None,
        *,
        ping_seconds: float = 15.0,
        unknown_wait_seconds: float = 10.0,
        final_wait_seconds: float = 5.0,
    ) -> None:
        self.hub = hub
        self.read = read
        self.order_id = order_id
        self.after_event_id = after_event_id
        self.ping_seconds = ping_seconds
        self.unknown_wait_seconds = unknown_wait_seconds
        self.final_wait_seconds = final_wait_seconds
        self._sub: Subscription | None = None
        self._snapshot: Snapshot | None = None
        self.client_gone = False

    async def open(self) -> None:
        """Subscribe, then read the stored timeline. An order this instance has not heard of yet (placed
        through another instance a moment ago) is waited for; UnknownOrder if nothing comes in time."""
        if not _could_be_an_order_id(self.order_id):
            raise UnknownOrder(f"order {self.order_id[:60]} not found")
        self._sub = self.hub.subscribe(self.order_id)
        if self.client_gone:
            self._sub.stop()
        try:
            snapshot = await asyncio.to_thread(self.read, self.order_id, self.after_event_id)
            if not snapshot.known:
                snapshot = await self._wait_until_known()
        except BaseException:
            self.close()
            raise
        self._snapshot = snapshot

    async def _wait_until_known(self) -> Snapshot:
        assert self._sub is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.unknown_wait_seconds
        while (remaining := deadline - loop.time()) > 0:
            if await self._sub.next(remaining) is None:
                break
            # A row of the order committed; read again (the row stays deduplicated by seq).
            snapshot = await asyncio.to_thread(self.read, self.order_id, self.after_event_id)
            if snapshot.known:
                return snapshot
        raise UnknownOrder(f"order {self.order_id} not found")

    async def messages(self) -> AsyncGenerator[Push, None]:
        """Stored rows after the client's last seen one, then live ones, then `final`; pings when idle."""
        sub, snapshot = self._sub, self._snapshot
        if sub is None or snapshot is None:
            raise RuntimeError("open() first")
        last = snapshot.after_seq
        types = [row.type for row in snapshot.rows]
        for row in snapshot.rows:
            if row.seq > last:
                last = row.seq
                yield Push("event", row.text, row.event_id)
        while status_of(types) == "pending":
            live = await sub.next(self.ping_seconds)
            if sub.stopped:
                return
            if live is None:
                yield PING
            elif live.seq > last:
                last = live.seq
                types.append(live.type)
                yield Push("event", live.text, live.event_id, live.committed_at)
        # Final: what the order still awaits (a refund after the cancellation, a row of another topic a
        # moment behind) goes out before the `final` message, if it comes in time.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.final_wait_seconds
        while awaited(types) and (remaining := deadline - loop.time()) > 0:
            live = await sub.next(remaining)
            if sub.stopped:
                return
            if live is None:
                break
            if live.seq > last:
                last = live.seq
                types.append(live.type)
                yield Push("event", live.text, live.event_id, live.committed_at)
        yield final_push(self.order_id, status_of(types))

    def stop(self) -> None:
        """The client went away: `messages()` ends at its next step."""
        self.client_gone = True
        if self._sub is not None:
            self._sub.stop()

    def close(self) -> None:
        if self._sub is not None:
            self.hub.unsubscribe(self._sub)
