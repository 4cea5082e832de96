"""Pure tests of job.report: secret redaction and the status table. No database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from job.plan import StatusRow
from job.report import Redactor, redact_text, status_table

# ---------------------------------------------------------------------------- redact_text


@pytest.mark.parametrize(
    ("text", "secret_part"),
    [
        ("postgresql://app:s3cret@db:5432/app", "s3cret"),
        ("postgres://app:s3cret@db/app", "s3cret"),
        ("connect to postgresql://app:S3cr3t!x@db.internal/app failed", "S3cr3t!x"),
        ("POSTGRESQL://APP:UpperPw@DB/APP", "UpperPw"),
        ("postgresql://:onlypw@db/app", "onlypw"),
        ("postgresql://app:p%40ss%2Fw@db/app?sslmode=require", "p%40ss%2Fw"),
        ("postgresql://app:ab/cd@db/app", "ab/cd"),
        ("url=postgresql://a:one@h/d other=postgresql://b:two@h/d", "one"),
        ("url=postgresql://a:one@h/d other=postgresql://b:two@h/d", "two"),
        ("host=db user=app password=kvsecret dbname=app", "kvsecret"),
        ("host=db password = spaced-secret", "spaced-secret"),
        ("host=db password='quoted secret' dbname=app", "quoted secret"),
        ("host=db password='it\\'s secret' dbname=app", "secret"),
        ("host=db PASSWORD=UPPERKV", "UPPERKV"),
        ("postgresql://db/app?password=querypw&sslmode=require", "querypw"),
        ("host=db PaSsWoRd=MixedKV", "MixedKV"),
        ("host=db pa\u017f\u017fword=longs", "longs"),  # IGNORECASE matches the long s; so must the quick check
        ("Postgres://app:MixedScheme@db/app", "MixedScheme"),
    ],
)
def test_redact_text_removes_passwords(text: str, secret_part: str) -> None:
    """Passwords in URLs and `password=` conninfo never survive redaction."""
    out = redact_text(text, [])
    assert secret_part not in out
    assert "***" in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://app:s3cret@db:5432/app", "postgresql://app:***@db:5432/app"),
        ("host=db user=app password=kvsecret dbname=app", "host=db user=app password=*** dbname=app"),
        ("host=db password='quoted secret' dbname=app", "host=db password=*** dbname=app"),
    ],
)
def test_redact_text_keeps_the_rest(text: str, expected: str) -> None:
    """Redaction replaces only the password, so the host, user and database stay readable."""
    assert redact_text(text, []) == expected


@pytest.mark.parametrize(
    ("text", "secrets", "gone"),
    [
        ("token abc123 leaked", ["abc123"], ["abc123"]),
        ("pw=hunter2 and again hunter2", ["hunter2"], ["hunter2"]),
        ("two secrets: aaa-1 bbb-2", ["aaa-1", "bbb-2"], ["aaa-1", "bbb-2"]),
        ("decoded p@ss/w appears in an error", ["p@ss/w"], ["p@ss/w"]),
        ("regex chars .*+? survive", [".*+?"], [".*+?"]),
    ],
)
def test_redact_text_explicit_secrets(text: str, secrets: list[str], gone: list[str]) -> None:
    """Explicit secret strings are removed wherever they appear."""
    out = redact_text(text, secrets)
    for secret in gone:
        assert secret not in out
    assert "***" in out


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://app@db/app",
        "applied 3 migrations in 120 ms",
        "host=db user=app dbname=app",
        "see https://example.com/docs",
    ],
)
def test_redact_text_leaves_harmless_text(text: str) -> None:
    """Text without secrets is unchanged (empty secrets are ignored)."""
    assert redact_text(text, ["", ""]) == text


def test_redactor_cleans_nested_event_values() -> None:
    """The structlog processor redacts strings inside nested dicts and lists of an event."""
    redactor = Redactor(["topsecret", ""])
    event = {
        "event": "db.connect",
        "url": "postgresql://app:urlpw@db/app",
        "nested": {"msg": "topsecret here", "list": ["password=abc", 3]},
        "count": 2,
    }
    out = redactor(None, "info", event)
    flat = repr(out)
    for secret in ("urlpw", "topsecret", "abc"):
        assert secret not in flat
    assert out["count"] == 2
    assert out["event"] == "db.connect"


# ---------------------------------------------------------------------------- status_table


def rows() -> list[StatusRow]:
    return [
        StatusRow(
            "1",
            "create_users",
            "applied",
            applied_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
            execution_ms=12,
            source="migrate-job",
        ),
        StatusRow("2", "add_index", "failed", execution_ms=12_345, error="boom", source="migrate-job"),
        StatusRow("10", "later", "pending"),
    ]


def test_status_table_header() -> None:
    """The status table starts with the columns VERSION NAME STATE APPLIED AT DURATION."""
    header = status_table(rows()).splitlines()[0]
    assert header.split() == ["VERSION", "NAME", "STATE", "APPLIED", "AT", "DURATION"]
    positions = [header.index(col) for col in ("VERSION", "NAME", "STATE", "APPLIED AT", "DURATION")]
    assert positions == sorted(positions)


def test_status_table_header_without_rows() -> None:
    """An empty history still prints the header."""
    assert status_table([]).split() == ["VERSION", "NAME", "STATE", "APPLIED", "AT", "DURATION"]


def test_status_table_one_line_per_row_in_order() -> None:
    """Each row is one line, in the given order, with its version, name and state."""
    lines = status_table(rows()).splitlines()
    assert len(lines) == 4
    assert lines[1].split()[:3] == ["1", "create_users", "applied"]
    assert lines[2].split()[:3] == ["2", "add_index", "failed"]
    assert lines[3].split() == ["10", "later", "pending"]


def test_status_table_columns_are_aligned() -> None:
    """Every column starts at the same position on every line."""
    lines = status_table(rows()).splitlines()
    header = lines[0]
    for col in ("NAME", "STATE"):
        start = header.index(col)
        for line in lines[1:]:
            assert line[start - 1] == " "
            assert line[start] != " "


@pytest.mark.parametrize(
    ("ms", "shown"),
    [(12, "12 ms"), (9_999, "9999 ms"), (12_345, "12.3 s"), (None, "")],
)
def test_status_table_duration_format(ms: int | None, shown: str) -> None:
    """Durations show as ms below 10 s and as seconds above."""
    table = status_table([StatusRow("1", "a", "applied", execution_ms=ms)])
    line = table.splitlines()[1]
    if shown:
        assert line.endswith(shown)
    else:
        assert line.split() == ["1", "a", "applied"]


def test_status_table_applied_at() -> None:
    """The applied time is shown as date and time with its UTC offset."""
    line = status_table(rows()).splitlines()[1]
    assert "2024-01-02 03:04:05+0000" in line


def test_status_table_source_column_for_adopted_history() -> None:
    """A SOURCE column appears only when some row came from another tool or a baseline."""
    plain = status_table(rows())
    assert "SOURCE" not in plain
    adopted = [*rows(), StatusRow("0", "baseline", "applied", source="baseline")]
    table = status_table(adopted)
    assert table.splitlines()[0].split()[-1] == "SOURCE"
    assert table.splitlines()[-1].split()[-1] == "baseline"
