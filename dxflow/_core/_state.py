"""The engine's persistent state: one SQLite file in the home.

Every service keeps its tables here. Schema changes are appended to `_MIGRATIONS`
and applied in order (tracked by ``PRAGMA user_version``); never edit a shipped one.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .._exceptions import ConfigError

__all__ = ["State"]

_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE keys (
        identity TEXT PRIMARY KEY,
        key_type TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        public_key TEXT NOT NULL,
        permissions TEXT NOT NULL,
        created_at REAL NOT NULL,
        rotated_at REAL
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time REAL NOT NULL,
        identity TEXT,
        operation TEXT NOT NULL,
        target TEXT,
        outcome TEXT NOT NULL,
        client TEXT,
        detail TEXT
    );
    CREATE INDEX audit_time ON audit (time);
    """,
    """
    CREATE TABLE workflows (
        name TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    """,
    """
    CREATE TABLE shares (
        id TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        writable INTEGER NOT NULL,
        expires_at REAL NOT NULL,
        max_uses INTEGER,
        uses INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        created_by TEXT,
        revoked INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE uploads (
        id TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        length INTEGER,
        overwrite INTEGER NOT NULL,
        checksum TEXT,
        metadata TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        created_by TEXT
    );
    """,
    """
    ALTER TABLE keys ADD COLUMN run_as TEXT;
    ALTER TABLE keys ADD COLUMN workflow_policy TEXT;
    """,
    # by_master: the spec was last written by a MASTER caller, so its variables may come
    # from the engine's process environment (workflows made before this: not trusted).
    """
    ALTER TABLE workflows ADD COLUMN by_master INTEGER NOT NULL DEFAULT 0;
    """,
    # Writable links become drop boxes (write-only) unless made readable; a link records
    # the version of the key that made it, and dies with that key.
    """
    ALTER TABLE shares ADD COLUMN readable INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE shares ADD COLUMN creator_key TEXT;
    UPDATE shares SET readable = 1 WHERE writable = 0;
    CREATE INDEX shares_creator ON shares (created_by);
    """,
    # Proxies: the spec as JSON (the model's fields), the port bound (the one picked for
    # 0, so it stays across restarts); access links store a hash of their secret.
    """
    CREATE TABLE proxies (
        name TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        port INTEGER
    );
    CREATE TABLE proxy_links (
        id TEXT PRIMARY KEY,
        proxy TEXT NOT NULL,
        secret_hash TEXT NOT NULL,
        expires_at REAL NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0,
        created_by TEXT,
        created_at REAL NOT NULL
    );
    CREATE INDEX proxy_links_proxy ON proxy_links (proxy);
    CREATE INDEX proxy_links_creator ON proxy_links (created_by);
    """,
    # Bridges: join tokens (a hash of their secret) and the agents joined to this master.
    """
    CREATE TABLE bridge_tokens (
        id TEXT PRIMARY KEY,
        secret_hash TEXT NOT NULL,
        labels TEXT NOT NULL,
        uses_left INTEGER NOT NULL,
        expires_at REAL NOT NULL,
        created_by TEXT,
        created_at REAL NOT NULL
    );
    CREATE TABLE bridges (
        name TEXT PRIMARY KEY,
        identity TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        labels TEXT NOT NULL,
        engine_id TEXT,
        joined_at REAL NOT NULL,
        last_seen REAL,
        drained INTEGER NOT NULL DEFAULT 0,
        allow TEXT NOT NULL DEFAULT '',
        facts TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE placements (
        workflow TEXT PRIMARY KEY,
        agent TEXT NOT NULL,
        placed_by TEXT,
        placed_at REAL NOT NULL
    );
    """,
    # profile: the workflow policy profile of whoever wrote the spec last; a reload reads
    # its env files under it (NULL, older rows: MASTER's privileged, else the default).
    """
    ALTER TABLE workflows ADD COLUMN profile TEXT;
    """,
    # runtime: what runs the workflow (NULL, older rows: docker).
    """
    ALTER TABLE workflows ADD COLUMN runtime TEXT;
    """,
)


class State:
    """A thread-safe handle on the state database (short statements under one lock)."""

    def __init__(self, path: Path) -> None:
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the engine state {path}: {exc}") from None
        path.chmod(0o600)
        self._lock = threading.Lock()
        self._migrate()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(_MIGRATIONS):
            raise ConfigError(
                f"the engine state is schema {version}, newer than this dxflow understands"
            )
        with self.transaction() as db:
            for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.split(";")):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self._lock:
            return self._db.execute(sql, params).rowcount

    def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self._lock:
            row_id = self._db.execute(sql, params).lastrowid
        return int(row_id or 0)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()
