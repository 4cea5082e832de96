"""Cancellation of a target's work from another thread (a fleet's SIGTERM), without threading a flag around.

A single-target run needs none of this: SIGTERM raises `Interrupted` in the main thread wherever it waits,
and psycopg cancels the running query. A fleet runs targets on worker threads, where no signal arrives: the
main thread calls `Scope.cancel(signum)` on each running target's scope, which

- wakes every `job.cancel.sleep()` of that thread with `Interrupted` (lock waits, connect retries, backoffs),
- cancels the query running on each connection the thread opened (`register`, called by `job.db`), so the
  usual error paths roll back, record the interruption and release the lock.

Outside a scope, `sleep` is `time.sleep` and `register` does nothing.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

from job.errors import Interrupted

_local = threading.local()


class Scope:
    """The cancellable work of one thread (one fleet target)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()

    @property
    def cancelled(self) -> bool:
        return self.signum is not None

    def cancel(self, signum: int) -> None:
        """From any thread: stop this scope's waits and running queries."""
        with self._lock:
            if self.signum is not None:
                return
            self.signum = signum
            connections = list(self._connections)
        self._event.set()
        for conn in connections:
            with contextlib.suppress(Exception):
                if not conn.closed:
                    conn.cancel_safe(timeout=5.0)

    def register(self, conn: Any) -> None:
        with self._lock:
            self._connections.add(conn)
            cancelled = self.signum is not None
        if cancelled:  # opened after the cancel: stop it too
            with contextlib.suppress(Exception):
                conn.cancel_safe(timeout=5.0)

    def sleep(self, seconds: float) -> None:
        if self._event.wait(max(0.0, seconds)):
            raise Interrupted(self.signum or 15)

    def check(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum)


def current() -> Scope | None:
    scope: Scope | None = getattr(_local, "scope", None)
    return scope


@contextlib.contextmanager
def scope(value: Scope) -> Iterator[Scope]:
    """Run the block (on this thread) inside `value`."""
    previous = current()
    _local.scope = value
    try:
        yield value
    finally:
        _local.scope = previous


def sleep(seconds: float) -> None:
    """time.sleep that a fleet's cancel interrupts (raises Interrupted)."""
    s = current()
    if s is None:
        time.sleep(max(0.0, seconds))
    else:
        s.sleep(seconds)


def check() -> None:
    """Raise Interrupted if this thread's work was cancelled."""
    s = current()
    if s is not None:
        s.check()


def register(conn: Any) -> None:
    """A connection the current scope's cancel must reach."""
    s = current()
    if s is not None:
        s.register(conn)
