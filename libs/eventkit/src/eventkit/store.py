"""Durable service state in SQLite, with an inbox that makes redelivery harmless.

`process(event_id, decide)` runs `decide` inside one SQLite transaction together with recording the
event id and the events it produced. Once the broker acknowledged those events, `confirm` marks them.
A redelivered event (same id) runs nothing: if its events were confirmed it returns none; if not (a crash
between "state saved" and "outputs acknowledged") it returns the recorded events again, with the same
derived ids, so they are neither lost nor decided twice.
"""

from __future__ import annotations

import json
import pickle
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from eventkit.events import Event

_INBOX = """
create table if not exists inbox (
    event_id  text primary key,
    outputs   blob not null,
    confirmed integer not null default 0  -- 1 once the broker acknowledged the outputs
);
create table if not exists inbox_stats (name text primary key, n integer not null);
insert or ignore into inbox_stats values ('redeliveries', 0);
"""


class StateStore:
    def __init__(self, path: Path, schema_sql: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("pragma journal_mode=wal")
        self._db.execute("pragma synchronous=normal")
        self._db.executescript(_INBOX + schema_sql)
        columns = {row[1] for row in self._db.execute("pragma table_info(inbox)")}
        if "confirmed" not in columns:  # an older state file: unknown, so re-emit (consumers deduplicate)
            self._db.execute("alter table inbox add column confirmed integer not null default 0")
        self._lock = threading.RLock()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("begin immediate")
            try:
                yield self._db
            except BaseException:
                self._db.execute("rollback")
                raise
            self._db.execute("commit")

    def read(self) -> sqlite3.Connection:
        """A fresh connection for read-only queries from other threads (WAL lets them run beside writes)."""
        return sqlite3.connect(self.path)

    def process(self, event_id: str, decide: Callable[[sqlite3.Connection], Sequence[Event]]) -> list[Event]:
        with self.transaction() as db:
            row = db.execute("select outputs, confirmed from inbox where event_id = ?", (event_id,)).fetchone()
            if row is not None:
                db.execute("update inbox_stats set n = n + 1 where name = 'redeliveries'")
                outputs: list[Event] = [] if row[1] else pickle.loads(row[0])
                return outputs
            outputs = list(decide(db))
            db.execute(
                "insert into inbox (event_id, outputs, confirmed) values (?, ?, 0)", (event_id, pickle.dumps(outputs))
            )
            return outputs

    def confirm(self, event_ids: Sequence[str]) -> None:
        """The outputs of these inputs were acknowledged by the broker: a redelivery re-emits nothing."""
        if event_ids:
            with self.transaction() as db:
                db.executemany("update inbox set confirmed = 1 where event_id = ?", [(i,) for i in event_ids])

    def redeliveries(self) -> int:
        """How many already-processed events arrived again, over the store's whole life."""
        with self.read() as db:
            return int(db.execute("select n from inbox_stats where name = 'redeliveries'").fetchone()[0])

    def close(self) -> None:
        self._db.close()


def keyed_table(name: str) -> str:
    """DDL for a table of JSON documents by key (one row per order, SKU, ...)."""
    return f"create table if not exists {name} (key text primary key, data text not null);"


def load_doc(db: sqlite3.Connection, table: str, key: str) -> dict | None:
    row = db.execute(f"select data from {table} where key = ?", (key,)).fetchone()
    return json.loads(row[0]) if row else None


def save_doc(db: sqlite3.Connection, table: str, key: str, doc: dict) -> None:
    db.execute(
        f"insert into {table} (key, data) values (?, ?) on conflict(key) do update set data = excluded.data",
        (key, json.dumps(doc, default=str)),
    )
