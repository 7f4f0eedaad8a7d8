"""Store-and-forward for alerts and state changes: an on-disk spool in SQLite (stdlib, crash-safe).

Every alert and state change is written to the spool before it is handed to MQTT and deleted only when the
broker acknowledges it (PUBACK), so a crash or restart at any moment loses nothing; at worst a message whose
acknowledgement was in flight is sent twice (at-least-once, like QoS 1 itself).

- Connected, nothing waiting: published at once and live.
- Disconnected, or older messages still waiting: kept in order and sent once connected, in order. JSON
  payloads (alerts) then carry `"historical": true`; a state change waiting for a device whose newer state
  arrives replaces the older one (state topics are retained, so only the latest matters).
- Messages left over from an earlier run are re-sent as historical on the next connection.
- Bounded by `max_bytes` and `max_age_s`. Expired messages are dropped when met. When full, `on_full`
  decides: `drop_oldest` (default: the newest alerts are the ones an operator needs) or `drop_newest`.
  Every drop is counted and logged.

- A spool file that cannot be opened (read-only or full filesystem) or that fails a write mid-run (disk
  full) never stops the agent: the outbox moves to memory with everything it held, the fallback is logged
  and counted (`on_disk`, `fallbacks` in the stats), and the file is tried again every `RETRY_S` seconds;
  once it takes writes again, the outbox moves back to disk. While in memory, a restart loses the outbox.

Only the service loop's thread touches the database; paho's network thread reports acknowledgements
through a deque.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

log = logging.getLogger(__name__)

DROP_OLDEST, DROP_NEWEST = "drop_oldest", "drop_newest"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    created REAL NOT NULL,
    historical INTEGER NOT NULL,
    coalesce_key TEXT
)
"""

Publish = Callable[[str, bytes, int, bool], int | None]  # returns the message id, or None if not sent
RETRY_S = 60.0  # while in memory, how often the spool file is tried again
_SELECT_ALL = "SELECT id, topic, payload, qos, retain, created, historical, coalesce_key FROM outbox"
_INSERT_ALL = (
    "INSERT INTO outbox (id, topic, payload, qos, retain, created, historical, coalesce_key) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def _open_file(path: Path) -> sqlite3.Connection:
    """The spool file, ready for writes; raises sqlite3.Error or OSError where the filesystem refuses."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Autocommit, one statement each. Built on one thread and used by the service loop's thread, never by
    # two at once, hence check_same_thread=False.
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # a spooled alert survives power loss too
        db.execute(_SCHEMA)
        # Everything found on disk was never acknowledged: it is waiting, and historical by now.
        db.execute("UPDATE outbox SET historical = 1")
    except sqlite3.Error:
        db.close()
        raise
    return db


def _memory(rows: list[tuple[object, ...]]) -> sqlite3.Connection:
    """An in-memory outbox holding `rows` (every column, ids kept, so in-flight bookkeeping stays valid)."""
    db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    db.execute(_SCHEMA)
    db.executemany(_INSERT_ALL, rows)
    return db


@dataclass(frozen=True, slots=True)
class _Row:
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    created: float
    historical: bool


def mark_historical(payload: bytes) -> bytes:
    """Add `"historical": true` to a JSON object payload; other payloads are sent as they are."""
    if not payload.startswith(b"{"):
        return payload
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload
    if not isinstance(body, dict):
        return payload
    body["historical"] = True
    return orjson.dumps(body)


class Spool:
    """The outbox between the service and MQTT."""

    def __init__(
        self,
        path: Path,
        max_bytes: int,
        max_age_s: float,
        on_full: str = DROP_OLDEST,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path, self.max_bytes, self.max_age_s, self.on_full, self.clock = (
            path,
            max_bytes,
            max_age_s,
            on_full,
            clock,
        )
        self.fallbacks = 0
        self.on_disk = True
        self._next_retry = 0.0
        try:
            self._db = _open_file(path)
        except (sqlite3.Error, OSError) as err:
            self._db = _memory([])
            self._fell_back(err)
        self._in_flight: dict[int, int] = {}  # paho mid -> row id, for this process's publishes
        self._acked: deque[int] = deque()  # mids acknowledged by the broker (from the network thread)
        self.dropped: Counter[str] = Counter()
        self.flushed = 0
        total = self._db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM outbox").fetchone()[0]
        self._bytes = int(total)
        self._waiting = self.stored()  # kept in memory: checked on every loop iteration
        if self._waiting:
            log.info("spool %s: %d messages from an earlier run, sent once connected", path, self._waiting)

    def close(self) -> None:
        """Close the database; waiting messages stay on disk for the next run (not while in memory)."""
        self._db.close()

    def _fell_back(self, err: Exception) -> None:
        self.on_disk = False
        self.fallbacks += 1
        self._next_retry = self.clock() + RETRY_S
        log.error(
            "spool %s unusable (%s): the outbox is kept in memory (lost if the agent restarts); trying the "
            "file again every %.0f s",
            self.path,
            err,
            RETRY_S,
        )

    def _write(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Cursor:
        """One write statement; a filesystem that refuses it (full, read-only) moves the outbox to memory
        with every row, and the statement runs there, so nothing is lost or left untracked."""
        try:
            return self._db.execute(sql, params)
        except sqlite3.OperationalError as err:
            if not self.on_disk:
                raise
            rows = self._db.execute(_SELECT_ALL).fetchall()
            self._db.close()
            self._db = _memory(rows)
            self._fell_back(err)
            return self._db.execute(sql, params)

    def _retry_disk(self) -> None:
        """While in memory: put the outbox back into the file once the file takes writes again."""
        if self.on_disk or self.clock() < self._next_retry:
            return
        self._next_retry = self.clock() + RETRY_S
        rows = self._db.execute(_SELECT_ALL).fetchall()
        try:
            disk = _open_file(self.path)
            disk.execute("BEGIN IMMEDIATE")
            disk.execute("DELETE FROM outbox")
            disk.executemany(_INSERT_ALL, rows)
            disk.execute("COMMIT")
        except (sqlite3.Error, OSError) as err:
            log.warning("spool %s still unusable (%s): staying in memory", self.path, err)
            return
        self._db.close()
        self._db = disk
        self.on_disk = True
        log.warning("spool %s writable again: %d messages moved back from memory", self.path, len(rows))

    def waiting(self) -> int:
        """Messages stored and not yet handed to MQTT in this run."""
        return self._waiting

    def stored(self) -> int:
        """Every message on disk, waiting or in flight."""
        return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def size_bytes(self) -> int:
        """Payload bytes on disk."""
        return self._bytes

    def acknowledged(self, mid: int) -> None:
        """Called on paho's network thread for every PUBACK: only records it."""
        self._acked.append(mid)

    def submit(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        connected: bool,
        publish: Publish,
        coalesce_key: str | None = None,
    ) -> None:
        """Store a message, then send it at once when connected and nothing older is waiting."""
        self.settle()
        historical = not connected
        if coalesce_key is not None:
            self._drop_waiting(coalesce_key)
        if not self._make_room(len(payload)):
            return
        cursor = self._write(
            "INSERT INTO outbox (topic, payload, qos, retain, created, historical, coalesce_key) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (topic, payload, qos, int(retain), self.clock(), int(historical), coalesce_key),
        )
        self._bytes += len(payload)
        self._waiting += 1
        row_id = int(cursor.lastrowid or 0)
        if connected and self._waiting == 1:
            self._send(_Row(row_id, topic, payload, qos, retain, self.clock(), False), publish)

    def flush(self, publish: Publish, limit: int = 1000) -> int:
        """Send waiting messages in order (at most `limit` now); returns how many were handed over."""
        self._retry_disk()
        self.settle()
        self._expire()
        sent = 0
        for row in self._waiting_rows(limit):
            self._send(row, publish)
            sent += 1
        self.flushed += sent
        return sent

    def _send(self, row: _Row, publish: Publish) -> None:
        payload = mark_historical(row.payload) if row.historical else row.payload
        mid = publish(row.topic, payload, row.qos, row.retain)
        if mid is None:
            return  # not handed over: stays waiting
        self._waiting -= 1
        if row.qos == 0:
            self._delete(row.id)
            return
        self._in_flight[mid] = row.id

    def settle(self) -> None:
        """Delete what the broker acknowledged (cheap when nothing was). A row leaves the in-flight set only
        once its delete has gone through (on disk, or in memory after a fallback)."""
        while self._acked:
            mid = self._acked[0]
            row_id = self._in_flight.get(mid)
            if row_id is not None:
                self._delete(row_id)
                del self._in_flight[mid]
            self._acked.popleft()

    def _delete(self, row_id: int) -> None:
        found = self._db.execute("SELECT LENGTH(payload) FROM outbox WHERE id = ?", (row_id,)).fetchone()
        if found is None:
            return
        self._write("DELETE FROM outbox WHERE id = ?", (row_id,))
        self._bytes -= int(found[0])

    def _waiting_rows(self, limit: int) -> list[_Row]:
        in_flight = list(self._in_flight.values())
        query = "SELECT id, topic, payload, qos, retain, created, historical FROM outbox"
        if in_flight:
            query += f" WHERE id NOT IN ({','.join('?' * len(in_flight))})"
        query += " ORDER BY id LIMIT ?"
        rows = self._db.execute(query, [*in_flight, limit]).fetchall()
        return [_Row(r[0], r[1], bytes(r[2]), r[3], bool(r[4]), r[5], bool(r[6])) for r in rows]

    def _drop_waiting(self, coalesce_key: str) -> None:
        in_flight = set(self._in_flight.values())
        rows = self._db.execute("SELECT id FROM outbox WHERE coalesce_key = ?", (coalesce_key,)).fetchall()
        for (row_id,) in rows:
            if row_id not in in_flight:
                self._delete(row_id)
                self._waiting -= 1

    def _expire(self) -> None:
        cutoff = self.clock() - self.max_age_s
        in_flight = set(self._in_flight.values())
        rows = self._db.execute("SELECT id FROM outbox WHERE created < ?", (cutoff,)).fetchall()
        expired = [row_id for (row_id,) in rows if row_id not in in_flight]
        for row_id in expired:
            self._delete(row_id)
            self._waiting -= 1
        if expired:
            self.dropped["expired"] += len(expired)
            log.warning("spool: %d messages older than %.0f s dropped", len(expired), self.max_age_s)

    def _make_room(self, size: int) -> bool:
        """Apply the full policy; False when the new message itself is the one dropped."""
        if self._bytes + size <= self.max_bytes:
            return True
        if self.on_full == DROP_NEWEST or size > self.max_bytes:
            self.dropped["full"] += 1
            log.warning("spool full (%d bytes): new message dropped (on_full=%s)", self._bytes, self.on_full)
            return False
        in_flight = set(self._in_flight.values())
        freed = 0
        rows = self._db.execute("SELECT id, LENGTH(payload) FROM outbox ORDER BY id").fetchall()
        for row_id, length in rows:
            if self._bytes - freed + size <= self.max_bytes:
                break
            if row_id in in_flight:
                continue
            self._write("DELETE FROM outbox WHERE id = ?", (row_id,))
            freed += int(length)
            self._waiting -= 1
            self.dropped["full"] += 1
        self._bytes -= freed
        log.warning("spool full: oldest waiting messages dropped to make room (on_full=drop_oldest)")
        return self._bytes + size <= self.max_bytes

    def snapshot(self) -> dict[str, object]:
        """For the stats topic and Prometheus."""
        return {
            "stored": self.stored(),
            "waiting": self.waiting(),
            "bytes": self._bytes,
            "flushed": self.flushed,
            "dropped": dict(self.dropped),
            "on_disk": self.on_disk,
            "fallbacks": self.fallbacks,
        }
