"""ADBC PostgreSQL connections kept open for the life of the process, one small pool per URL.

Opening an ADBC PostgreSQL connection costs far more than a libpq connection: besides the server
forking a backend and authenticating, the driver reads the whole ``pg_type`` catalog to build its
type resolver. Measured here: about 0.4 s per connection on a loaded 2-core machine, against 0.03 s for
psycopg. The nightly reads and writes through ADBC a few hundred times, so a fresh connection each
time cost more than the COPYs themselves. A connection is taken from the pool, used in one
transaction (committed on success, rolled back on error) and put back; idle ones sit outside any
transaction, so they hold no locks and no snapshot.

The pool is keyed by process id as well as URL: a forked child never touches its parent's sockets.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

# Enough for the steps of one in-process run (one at a time) plus a reader opened inside a writer.
MAX_IDLE_PER_URL = 4

_idle: dict[tuple[int, str], list[Any]] = {}
_lock = threading.Lock()


def _open(uri: str) -> Any:
    import adbc_driver_postgresql.dbapi as pg_adbc

    return pg_adbc.connect(uri)


def _alive(conn: Any) -> bool:
    """A pooled connection the server has not closed (restart, idle timeout, terminated backend)."""
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()
        return True
    except Exception:  # any driver error means: do not reuse it
        _close_quietly(conn)
        return False


def _close_quietly(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.close()


def _checkout(uri: str) -> Any:
    key = (os.getpid(), uri)
    while True:
        with _lock:
            idle = _idle.get(key)
            conn = idle.pop() if idle else None
        if conn is None:
            return _open(uri)
        if _alive(conn):
            return conn


def _checkin(uri: str, conn: Any) -> None:
    key = (os.getpid(), uri)
    with _lock:
        idle = _idle.setdefault(key, [])
        if len(idle) < MAX_IDLE_PER_URL:
            idle.append(conn)
            return
    _close_quietly(conn)


@contextlib.contextmanager
def adbc_connection(uri: str) -> Iterator[Any]:
    """A pooled ADBC connection inside one transaction: committed on success, rolled back on error.

    Connection errors propagate from the driver unchanged; the caller names the warehouse."""
    conn = _checkout(uri)
    try:
        yield conn
        conn.commit()
    except BaseException:
        try:
            conn.rollback()
        except Exception:  # a broken connection cannot roll back: drop it (the server already has)
            _close_quietly(conn)
        else:
            _checkin(uri, conn)
        raise
    _checkin(uri, conn)


def close_pooled(uri: str | None = None) -> None:
    """Close this process's idle connections (to ``uri``, or all): before dropping a database, at exit."""
    pid = os.getpid()
    with _lock:
        keys = [k for k in _idle if k[0] == pid and (uri is None or k[1] == uri)]
        conns = [conn for k in keys for conn in _idle.pop(k)]
    for conn in conns:
        _close_quietly(conn)
