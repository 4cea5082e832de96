"""The benchmark proxy's round-trip counting (bench/proxy.py): pure bookkeeping, no network."""

from __future__ import annotations

import struct

from bench.proxy import RoundTripCounter, Stats, describe_pg


def _query(text: str) -> bytes:
    body = text.encode() + b"\0"
    return b"Q" + struct.pack("!i", len(body) + 4) + body


def _parse(text: str) -> bytes:
    body = b"\0" + text.encode() + b"\0" + struct.pack("!h", 0)
    return b"P" + struct.pack("!i", len(body) + 4) + body


def _startup() -> bytes:
    body = struct.pack("!i", 196608) + b"user\0postgres\0\0"
    return struct.pack("!i", len(body) + 4) + body


def test_first_client_send_counts_one() -> None:
    c = RoundTripCounter()
    assert c.client_sent(1, _startup()) is True
    assert c.total == 1


def test_pipelined_client_sends_count_once_until_the_server_speaks() -> None:
    c = RoundTripCounter()
    c.client_sent(1, b"a")
    assert c.client_sent(1, b"b") is False
    assert c.client_sent(1, b"c") is False
    c.server_sent(1, b"reply")
    c.server_sent(1, b"more reply")
    assert c.client_sent(1, b"d") is True
    assert c.total == 2


def test_request_response_pairs_count_one_each() -> None:
    c = RoundTripCounter()
    for _ in range(5):
        c.client_sent(1, b"q")
        c.server_sent(1, b"r")
    assert c.total == 5
    assert c.per_conn == {1: 5}


def test_connections_are_counted_separately_and_summed() -> None:
    c = RoundTripCounter()
    c.client_sent(1, b"x")
    c.client_sent(2, b"y")  # first send on connection 2: its own round trip
    c.server_sent(1, b"r")
    c.client_sent(2, b"z")  # connection 1's server reply does not start a round trip on connection 2
    c.client_sent(1, b"w")
    assert c.per_conn == {1: 2, 2: 1}
    assert c.total == 3


def test_server_data_before_any_client_data_does_not_count() -> None:
    c = RoundTripCounter()
    c.server_sent(1, b"hello")
    assert c.total == 0
    c.client_sent(1, b"q")
    assert c.total == 1


def test_reset_and_byte_counters() -> None:
    c = RoundTripCounter()
    c.client_sent(1, b"abc")
    c.server_sent(1, b"de")
    assert (c.client_bytes, c.server_bytes, c.client_chunks, c.server_chunks) == (3, 2, 1, 1)
    c.reset()
    assert c.total == 0 and c.events == [] and c.client_bytes == 0
    assert c.client_sent(1, b"q") is True  # after a reset the next send is a first send again


def test_events_are_labelled_with_the_postgres_message() -> None:
    c = RoundTripCounter()
    c.client_sent(1, _startup(), at=0.5)
    c.server_sent(1, b"R")
    c.client_sent(1, _query("BEGIN;\nSET LOCAL lock_timeout = 5000;"))
    c.server_sent(1, b"C")
    c.client_sent(1, _parse("SELECT pg_try_advisory_lock($1)"))
    c.server_sent(1, b"1")
    c.client_sent(1, b"X\0\0\0\4")
    stats = Stats.of(c)
    assert [e.label for e in stats.events] == [
        "startup",
        "query: BEGIN; SET LOCAL lock_timeout = 5000;",
        "parse: SELECT pg_try_advisory_lock($1)",
        "terminate",
    ]
    assert stats.events[0].at == 0.5
    assert stats.round_trips == 4 and stats.connections == 1
    assert stats.by_label()["terminate"] == 1
    assert stats.to_json()["per_connection"] == {"1": 4}


def test_describe_untyped_and_odd_messages() -> None:
    assert describe_pg(struct.pack("!ii", 8, 80877103)) == "ssl-request"
    assert describe_pg(struct.pack("!ii", 8, 80877104)) == "gssenc-request"
    assert describe_pg(struct.pack("!ii", 16, 80877102) + b"\0" * 8) == "cancel-request"
    assert describe_pg(b"") == "empty"
    assert describe_pg(b"Z") == "message b'Z'"
    assert describe_pg(_query("x" * 200)).endswith("…")
