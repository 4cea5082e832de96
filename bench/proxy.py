"""A TCP proxy that adds network latency and counts round trips.

Every chunk read from either side is forwarded `delay` seconds later (one-way delay, so a
request/response costs 2 × delay more than without the proxy). Chunks are queued with their
due time and a writer per direction sleeps until each one is due: order is preserved and the
delays overlap, so throughput is not capped by the latency.

Round trips are counted per connection with one rule: a client send after the server has spoken
counts one (and so does the first client send of the connection). A client that pipelines
several messages before reading the answer pays one round trip; a client that waits for each
answer pays one per answer. Each counted round trip keeps a label: the PostgreSQL message the
client sent (startup, query text, terminate, ...) so the benchmark can say where they go.

In-process (used by bench/run.py)::

    proxy = DelayProxy("127.0.0.1", 5432, delay=0.005)
    port = proxy.start()          # listens on 127.0.0.1:port in a background thread
    ...                           # point the client at port
    stats = proxy.snapshot()      # waits for open connections to finish, then counts
    proxy.reset()
    proxy.stop()

Standalone (counters written as JSON on SIGTERM/SIGINT)::

    python bench/proxy.py --upstream 127.0.0.1:5432 --delay-ms 5 --stats-file stats.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# ---------------------------------------------------------------------------- pure: counting

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_CANCEL_REQUEST = 80877102
_PROTOCOL_3 = 196608
_TYPED = {
    b"Q": "query",
    b"P": "parse",
    b"B": "bind",
    b"E": "execute",
    b"S": "sync",
    b"H": "flush",
    b"D": "describe",
    b"C": "close",
    b"p": "auth",
    b"X": "terminate",
    b"F": "function-call",
    b"d": "copy-data",
    b"c": "copy-done",
    b"f": "copy-fail",
}


def _head(sql: bytes, width: int = 60) -> str:
    text = " ".join(sql.split(b"\0", 1)[0].decode("utf-8", "replace").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def describe_pg(data: bytes) -> str:
    """A short label for the first PostgreSQL frontend message in a chunk (best effort, never raises).

    Untyped first messages: `ssl-request`, `gssenc-request`, `cancel-request`, `startup`.
    Typed ones: `query: <SQL head>`, `parse: <SQL head>` (extended protocol), `auth`, `terminate`, ...
    """
    if len(data) >= 8 and data[0] == 0:
        length = int.from_bytes(data[0:4], "big")
        code = int.from_bytes(data[4:8], "big")
        if 8 <= length <= 100_000:
            if code == _SSL_REQUEST:
                return "ssl-request"
            if code == _GSSENC_REQUEST:
                return "gssenc-request"
            if code == _CANCEL_REQUEST:
                return "cancel-request"
            if code == _PROTOCOL_3:
                return "startup"
    if not data:
        return "empty"
    kind = data[0:1]
    name = _TYPED.get(kind)
    if name is None:
        return f"message {kind!r}"
    if kind == b"Q" and len(data) > 5:
        return f"query: {_head(data[5:])}"
    if kind == b"P" and len(data) > 5:
        body = data[5:]
        _name, _, rest = body.partition(b"\0")
        return f"parse: {_head(rest)}"
    return name


@dataclass(frozen=True)
class RoundTrip:
    """One counted round trip: which connection, when (seconds since the counter started), what was sent."""

    conn: int
    at: float
    label: str


@dataclass
class RoundTripCounter:
    """Counts round trips per connection: a client send after the server has spoken counts one.

    Pure bookkeeping (no I/O): the proxy calls `client_sent` / `server_sent` for every chunk in the
    order they arrive at the proxy.
    """

    _last: dict[int, str] = field(default_factory=dict)
    per_conn: dict[int, int] = field(default_factory=dict)
    events: list[RoundTrip] = field(default_factory=list)
    client_chunks: int = 0
    server_chunks: int = 0
    client_bytes: int = 0
    server_bytes: int = 0

    def client_sent(self, conn: int, data: bytes, at: float = 0.0) -> bool:
        """Record client→server data; True when it starts a new round trip."""
        self.client_chunks += 1
        self.client_bytes += len(data)
        new = self._last.get(conn) != "client"
        self._last[conn] = "client"
        self.per_conn.setdefault(conn, 0)
        if new:
            self.per_conn[conn] += 1
            self.events.append(RoundTrip(conn, at, describe_pg(data)))
        return new

    def server_sent(self, conn: int, data: bytes) -> None:
        """Record server→client data: the next client send starts a new round trip."""
        self.server_chunks += 1
        self.server_bytes += len(data)
        self._last[conn] = "server"
        self.per_conn.setdefault(conn, 0)

    @property
    def total(self) -> int:
        return sum(self.per_conn.values())

    def reset(self) -> None:
        self._last.clear()
        self.per_conn.clear()
        self.events.clear()
        self.client_chunks = self.server_chunks = self.client_bytes = self.server_bytes = 0


@dataclass(frozen=True)
class Stats:
    """A snapshot of the counters."""

    round_trips: int
    connections: int
    per_connection: dict[int, int]
    client_chunks: int
    server_chunks: int
    client_bytes: int
    server_bytes: int
    events: tuple[RoundTrip, ...]

    @classmethod
    def of(cls, counter: RoundTripCounter) -> Stats:
        return cls(
            round_trips=counter.total,
            connections=len(counter.per_conn),
            per_connection=dict(counter.per_conn),
            client_chunks=counter.client_chunks,
            server_chunks=counter.server_chunks,
            client_bytes=counter.client_bytes,
            server_bytes=counter.server_bytes,
            events=tuple(counter.events),
        )

    def by_label(self) -> Counter[str]:
        return Counter(e.label for e in self.events)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["per_connection"] = {str(k): v for k, v in self.per_connection.items()}
        return data


# ---------------------------------------------------------------------------- the proxy


class DelayProxy:
    """Forward 127.0.0.1:port ⇄ upstream with `delay` seconds one way, counting round trips."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        delay: float,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.delay = delay
        self.listen = (listen_host, listen_port)
        self.port = 0
        self.counter = RoundTripCounter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._next_conn = 0
        self._active = 0
        self._t0 = time.monotonic()
        self._stopped: asyncio.Event | None = None
        # asyncio holds tasks weakly, and Python 3.11's start_server keeps no reference to the connection
        # handlers it starts: a handler whose sockets are momentarily out of the selector could be garbage
        # collected mid-connection ("Task was destroyed but it is pending!"). Each handler is kept here.
        self._handlers: set[asyncio.Task[Any]] = set()

    # -- in a background thread ------------------------------------------------------

    def start(self) -> int:
        """Start the event loop in a daemon thread; returns the listening port."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_until_complete(self._serve_until_stopped())
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="delay-proxy", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self.port

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        assert self._loop is not None, "proxy not started"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def snapshot(self, *, settle: float = 5.0) -> Stats:
        """The counters, after waiting (up to `settle` s) until no connection is open any more."""
        return self._call(self._snapshot(settle))

    def reset(self) -> None:
        """Zero the counters (call between measurements)."""
        self._call(self._reset())

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        with contextlib.suppress(RuntimeError):  # loop already closed
            self._loop.call_soon_threadsafe(self._request_stop)
        self._thread.join(timeout=10)

    # -- on the loop -----------------------------------------------------------------

    async def _open(self) -> None:
        self._stopped = asyncio.Event()
        self._server = await asyncio.start_server(self._handle, self.listen[0], self.listen[1])
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _serve_until_stopped(self) -> None:
        assert self._stopped is not None and self._server is not None
        await self._stopped.wait()
        self._server.close()
        await self._server.wait_closed()

    def _request_stop(self) -> None:
        if self._stopped is not None:
            self._stopped.set()

    async def _snapshot(self, settle: float) -> Stats:
        deadline = time.monotonic() + settle
        while self._active and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return Stats.of(self.counter)

    async def _reset(self) -> None:
        self.counter.reset()
        self._t0 = time.monotonic()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        me = asyncio.current_task()
        if me is not None:
            self._handlers.add(me)
            me.add_done_callback(self._handlers.discard)
        self._next_conn += 1
        conn = self._next_conn
        self._active += 1
        try:
            try:
                server_r, server_w = await asyncio.open_connection(*self.upstream)
            except OSError:
                client_w.close()
                return
            try:
                await asyncio.gather(
                    self._pipe(conn, client_r, server_w, from_client=True),
                    self._pipe(conn, server_r, client_w, from_client=False),
                )
            finally:
                for w in (server_w, client_w):
                    w.close()
                    with contextlib.suppress(OSError, ConnectionError):
                        await w.wait_closed()
        finally:
            self._active -= 1

    async def _pipe(
        self, conn: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, from_client: bool
    ) -> None:
        """Read chunks as they come, stamp each with its due time, deliver each when due (in order)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:  # EOF: half-close the other side
                    if writer.can_write_eof():
                        with contextlib.suppress(OSError, ConnectionError):
                            writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        task = asyncio.create_task(deliver())
        try:
            while True:
                try:
                    data = await reader.read(256 * 1024)
                except (OSError, ConnectionError):
                    data = b""
                now = loop.time()
                if data:
                    if from_client:
                        self.counter.client_sent(conn, data, time.monotonic() - self._t0)
                    else:
                        self.counter.server_sent(conn, data)
                queue.put_nowait((now + self.delay, data))
                if not data:
                    break
            await task
        except (OSError, ConnectionError):
            task.cancel()
            writer.close()


# ---------------------------------------------------------------------------- standalone


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="TCP proxy adding latency and counting round trips.")
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the server")
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT to listen on (default 127.0.0.1:0)")
    parser.add_argument("--delay-ms", type=float, default=5.0, help="one-way delay per chunk (default 5 = 10 ms RTT)")
    parser.add_argument("--stats-file", type=Path, help="write the counters as JSON here on SIGTERM/SIGINT")
    args = parser.parse_args(argv)
    listen_host, listen_port = _hostport(args.listen)
    up_host, up_port = _hostport(args.upstream)
    proxy = DelayProxy(up_host, up_port, delay=args.delay_ms / 1000, listen_host=listen_host, listen_port=listen_port)
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    port = proxy.start()
    print(f"{listen_host}:{port}", flush=True)
    done.wait()
    stats = proxy.snapshot(settle=0.5)
    proxy.stop()
    text = json.dumps(stats.to_json(), indent=1)
    if args.stats_file:
        args.stats_file.write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
