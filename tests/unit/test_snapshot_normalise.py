"""Pure tests of job.snapshot: normalise, objects, diff, write_snapshot. No database, no pg_dump."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from job.config import load_settings
from job.errors import ConfigError
from job.history import HistoryTable
from job.snapshot import (
    Drift,
    check_schema_file,
    describe,
    diff,
    exclude_pattern,
    normalise,
    objects,
    pg_dump_args,
    write_snapshot,
)


def header(name: str, kind: str, schema: str = "public") -> str:
    """pg_dump's three-line object header (as written with --no-owner)."""
    return f"--\n-- Name: {name}; Type: {kind}; Schema: {schema}; Owner: -\n--\n"


PREAMBLE_17 = """--
-- PostgreSQL database dump
--

\\restrict 9kQ2xZr7Fh1mB3nV8cT5yW0pL4sD6gJaE1uI7oK2qR9tY3wX5zC8vN0bM6hG4fAa

-- Dumped from database version 17.6 (Debian 17.6-1.pgdg120+1)
-- Dumped by pg_dump version 17.6 (Debian 17.6-1.pgdg120+1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET transaction_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

"""

PREAMBLE_16 = """--
-- PostgreSQL database dump
--

-- Dumped from database version 16.2
-- Dumped by pg_dump version 16.2

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

"""

FUNCTION = (
    header("touch()", "FUNCTION")
    + """
CREATE FUNCTION public.touch() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN


    NEW.updated_at := now();
    RETURN NEW;
END;
$$;


SET default_table_access_method = heap;

"""
)

TABLES = (
    header("accounts", "TABLE")
    + """
CREATE TABLE public.accounts (
    id bigint NOT NULL,
    name text NOT NULL
);


"""
    + header("TABLE accounts", "COMMENT")
    + """
COMMENT ON TABLE public.accounts IS 'customers';


"""
    + header("users", "TABLE")
    + """
CREATE TABLE public.users (
    id bigint NOT NULL,
    account_id bigint NOT NULL
);


"""
)

CONSTRAINTS = (
    header("accounts accounts_pkey", "CONSTRAINT")
    + """
ALTER TABLE ONLY public.accounts
    ADD CONSTRAINT accounts_pkey PRIMARY KEY (id);


"""
    + header("users users_account_id_fkey", "FK CONSTRAINT")
    + """
ALTER TABLE ONLY public.users
    ADD CONSTRAINT users_account_id_fkey FOREIGN KEY (account_id) REFERENCES public.accounts(id);


"""
)

TRAILER_17 = """--
-- PostgreSQL database dump complete
--

\\unrestrict 9kQ2xZr7Fh1mB3nV8cT5yW0pL4sD6gJaE1uI7oK2qR9tY3wX5zC8vN0bM6hG4fAa

"""

TRAILER_16 = """--
-- PostgreSQL database dump complete
--

"""

DUMP_17 = PREAMBLE_17 + FUNCTION + TABLES + CONSTRAINTS + TRAILER_17
DUMP_16 = PREAMBLE_16 + FUNCTION + TABLES + CONSTRAINTS + TRAILER_16


def rule(table: str) -> str:
    """A RULE block named `r` on `table` (pg_dump 16 orders same-named rules by OID)."""
    return (
        header(f"{table} r", "RULE") + f"\nCREATE RULE r AS\n    ON UPDATE TO public.{table} DO\n NOTIFY {table};\n\n\n"
    )


def view(name: str, source: str) -> str:
    """A VIEW block selecting from `source`."""
    return header(name, "VIEW") + f"\nCREATE VIEW public.{name} AS\n SELECT 1 FROM public.{source};\n\n\n"


# ---------------------------------------------------------------------------- normalise


@pytest.mark.parametrize(
    "line",
    [
        "-- Dumped from database version 17.6 (Debian 17.6-1.pgdg120+1)",
        "-- Dumped by pg_dump version 16.10",
        "\\restrict 9kQ2xZr7Fh1mB3nV8cT5yW0pL4sD6gJaE1uI7oK2qR9tY3wX5zC8vN0bM6hG4fAa",
        "\\unrestrict 9kQ2xZr7Fh1mB3nV8cT5yW0pL4sD6gJaE1uI7oK2qR9tY3wX5zC8vN0bM6hG4fAa",
        "-- Started on 2025-08-14 10:00:00 UTC",
        "-- Completed on 2025-08-14 10:00:01 UTC",
        "-- TOC entry 215 (class 1259 OID 16390)",
        "-- Dependencies: 3",
        "SET transaction_timeout = 0;",
    ],
)
def test_unstable_lines_are_removed(line: str) -> None:
    """Version, restrict-key, timestamp, OID and pg_dump-17-only preamble lines are dropped."""
    dump = PREAMBLE_16.replace("SET statement_timeout", line + "\nSET statement_timeout") + TABLES + TRAILER_16
    assert line not in normalise(dump).splitlines()
    assert normalise(dump) == normalise(PREAMBLE_16 + TABLES + TRAILER_16)


def test_restrict_keys_and_versions_do_not_change_the_result() -> None:
    """Dumps differing only in \\restrict keys and version lines normalise to the same text."""
    other = DUMP_17.replace("9kQ2xZr7", "Zz00Yy11").replace("17.6", "17.7")
    assert other != DUMP_17
    assert normalise(other) == normalise(DUMP_17)


def test_pg_dump_16_and_17_output_normalise_alike() -> None:
    """The same schema dumped by pg_dump 16 (no restrict, no transaction_timeout) and 17 gives one text."""
    assert normalise(DUMP_16) == normalise(DUMP_17)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a\n\n\n\nb\n", "a\n\nb\n"),
        ("\n\n\na\n", "a\n"),
        ("a", "a\n"),
        ("a\n\n\n", "a\n"),
        ("a  \r\nb\t\r\n", "a\nb\n"),
        ("", ""),
        ("\n\n", ""),
    ],
)
def test_whitespace_outside_objects(raw: str, expected: str) -> None:
    """Blank-line runs collapse, trailing whitespace and CR go, and the text ends with one newline."""
    assert normalise(raw) == expected


def test_blank_lines_between_objects_collapse_to_one() -> None:
    """pg_dump's two blank lines between objects become one; no line has trailing whitespace."""
    text = normalise(DUMP_17)
    before, after = text.split("CREATE FUNCTION")[0], text.split("$$;")[1]
    assert "\n\n\n" not in before
    assert "\n\n\n" not in after
    assert "$$;\n\nSET default_table_access_method = heap;\n\n--\n-- Name: accounts; Type: TABLE" in text
    assert all(line == line.rstrip() for line in text.splitlines())
    assert text.endswith("--\n-- PostgreSQL database dump complete\n--\n")


def test_blank_lines_inside_an_object_are_kept() -> None:
    """A function body's own blank lines are part of its definition and stay as they are."""
    assert "BEGIN\n\n\n    NEW.updated_at" in normalise(DUMP_17)


def test_stable_preamble_is_kept() -> None:
    """The preamble's stable settings (search_path, check_function_bodies) stay: the file remains loadable."""
    text = normalise(DUMP_17)
    assert text.startswith("--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\n")
    assert "SELECT pg_catalog.set_config('search_path', '', false);" in text
    assert "SET check_function_bodies = false;" in text


SAMPLES = [
    DUMP_17,
    DUMP_16,
    PREAMBLE_16 + rule("t2") + rule("t1") + TRAILER_16,
    "a\n\n\n\nb  \n",
    "",
    FUNCTION,
    DUMP_17.replace("\n", "\r\n"),
]


@pytest.mark.parametrize("dump", SAMPLES)
def test_normalise_is_idempotent(dump: str) -> None:
    """normalise(normalise(x)) == normalise(x)."""
    once = normalise(dump)
    assert normalise(once) == once


def test_crlf_dump_normalises_like_lf() -> None:
    """A dump with CRLF line ends (a checkout with autocrlf) normalises to the LF text."""
    assert normalise(DUMP_17.replace("\n", "\r\n")) == normalise(DUMP_17)


def test_same_named_rules_get_one_order() -> None:
    """Same-named rules on different tables (ordered by OID by pg_dump 16) are sorted by table."""
    a = normalise(PREAMBLE_16 + rule("t2") + rule("t1") + TRAILER_16)
    b = normalise(PREAMBLE_16 + rule("t1") + rule("t2") + TRAILER_16)
    assert a == b
    assert a.index("public.t1") < a.index("public.t2")


def test_comment_moves_with_its_constraint() -> None:
    """A COMMENT block stays right after the constraint it belongs to when ties are re-ordered."""
    comment = header("CONSTRAINT c ON t2", "COMMENT") + "\nCOMMENT ON CONSTRAINT c ON public.t2 IS 'two';\n\n\n"
    t1 = header("t1 c", "CONSTRAINT") + "\nALTER TABLE ONLY public.t1\n    ADD CONSTRAINT c CHECK (true) NOT VALID;\n\n"
    t2 = header("t2 c", "CONSTRAINT") + "\nALTER TABLE ONLY public.t2\n    ADD CONSTRAINT c CHECK (true) NOT VALID;\n\n"
    text = normalise(PREAMBLE_16 + t2 + comment + t1 + TRAILER_16)
    assert text.index("-- Name: t1 c;") < text.index("-- Name: t2 c;") < text.index("-- Name: CONSTRAINT c ON t2;")
    assert normalise(PREAMBLE_16 + t1 + t2 + comment + TRAILER_16) == text


def test_dependency_order_of_other_types_is_kept() -> None:
    """Objects outside the tie-prone types keep pg_dump's (dependency) order: a_view after b_view."""
    text = normalise(PREAMBLE_16 + view("b_view", "t") + view("a_view", "b_view") + TRAILER_16)
    assert text.index("CREATE VIEW public.b_view") < text.index("CREATE VIEW public.a_view")


# ---------------------------------------------------------------------------- objects


def test_objects_parses_headers() -> None:
    """objects() maps (type, schema, name) to each block, in file order, preamble and trailer left out."""
    found = objects(normalise(DUMP_17))
    assert list(found) == [
        ("FUNCTION", "public", "touch()"),
        ("TABLE", "public", "accounts"),
        ("COMMENT", "public", "TABLE accounts"),
        ("TABLE", "public", "users"),
        ("CONSTRAINT", "public", "accounts accounts_pkey"),
        ("FK CONSTRAINT", "public", "users users_account_id_fkey"),
    ]
    users = found[("TABLE", "public", "users")]
    assert users.startswith(
        "--\n-- Name: users; Type: TABLE; Schema: public; Owner: -\n--\n\nCREATE TABLE public.users"
    )
    assert users.endswith(");\n")
    assert "dump complete" not in found[("FK CONSTRAINT", "public", "users users_account_id_fkey")]


def test_session_settings_are_not_part_of_an_object() -> None:
    """pg_dump's `SET default_table_access_method` between objects belongs to no object."""
    found = objects(normalise(DUMP_17))
    assert all("default_table_access_method" not in text for text in found.values())
    assert found[("FUNCTION", "public", "touch()")].endswith("$$;\n")


@pytest.mark.parametrize(
    ("name", "kind", "schema", "key"),
    [
        ("s2", "SCHEMA", "-", ("SCHEMA", "", "s2")),
        ("pgcrypto", "EXTENSION", "-", ("EXTENSION", "", "pgcrypto")),
        ("f(integer, text)", "FUNCTION", "public", ("FUNCTION", "public", "f(integer, text)")),
        ("Weird; Name", "TABLE", "My Schema", ("TABLE", "My Schema", "Weird; Name")),
    ],
)
def test_objects_keys(name: str, kind: str, schema: str, key: tuple[str, str, str]) -> None:
    """Schema-less objects get schema ""; names with spaces, commas and semicolons are read whole."""
    dump = PREAMBLE_16 + header(name, kind, schema) + "\nSELECT 1;\n\n\n" + TRAILER_16
    assert list(objects(normalise(dump))) == [key]


def test_objects_repeated_key_is_kept() -> None:
    """A repeated (type, schema, name) gets a numbered name instead of hiding the first block."""
    block = header("x", "TABLE") + "\nCREATE TABLE public.x ();\n\n"
    found = objects(normalise(block + block.replace("()", "(a int)")))
    assert list(found) == [("TABLE", "public", "x"), ("TABLE", "public", "x #2")]


def test_objects_of_text_without_headers_is_empty() -> None:
    """Text without pg_dump headers has no objects."""
    assert objects(normalise(PREAMBLE_16 + TRAILER_16)) == {}


# ---------------------------------------------------------------------------- diff


HAND_MADE = header("hand_made", "TABLE") + "\nCREATE TABLE public.hand_made (\n    id integer\n);\n\n\n"


@pytest.mark.parametrize(
    ("live", "added", "removed", "changed"),
    [
        (DUMP_16, [], [], []),
        (DUMP_17.replace(TABLES, TABLES + HAND_MADE), [("TABLE", "public", "hand_made")], [], []),
        (
            DUMP_17.replace(CONSTRAINTS, CONSTRAINTS.split(header("users users_account_id_fkey", "FK CONSTRAINT"))[0]),
            [],
            [("FK CONSTRAINT", "public", "users users_account_id_fkey")],
            [],
        ),
        (
            DUMP_17.replace("    name text NOT NULL\n", "    name text NOT NULL,\n    nickname text\n"),
            [],
            [],
            [("TABLE", "public", "accounts")],
        ),
        (
            DUMP_17.replace("'customers'", "'clients'").replace(
                "$$;\n\n\nSET default_table_access_method = heap;", "$$;"
            ),
            [],
            [],
            [("COMMENT", "public", "TABLE accounts")],
        ),
    ],
    ids=["same", "added", "removed", "changed", "comment-changed-and-no-session-set"],
)
def test_diff(
    live: str,
    added: list[tuple[str, str, str]],
    removed: list[tuple[str, str, str]],
    changed: list[tuple[str, str, str]],
) -> None:
    """diff() reports objects only live (added), only in the snapshot (removed) and redefined (changed)."""
    drift = diff(normalise(DUMP_17), live)
    assert (drift.added, drift.removed, drift.changed) == (added, removed, changed)
    assert bool(drift) == bool(added or removed or changed)
    assert drift.count == len(added) + len(removed) + len(changed)


def test_diff_ignores_order() -> None:
    """Objects that only moved (another pg_dump order) are not drift."""
    moved = PREAMBLE_16 + CONSTRAINTS + TABLES + FUNCTION + TRAILER_16
    assert not diff(DUMP_17, moved)


def test_drift_lines_and_details() -> None:
    """Drift formats one line per object, optionally with a unified diff of each changed object."""
    live = DUMP_17.replace(TABLES, TABLES + HAND_MADE).replace("    name text NOT NULL\n", "    name text\n")
    live = live.replace(FUNCTION, "")
    drift = diff(normalise(DUMP_17), normalise(live))
    assert drift.lines() == [
        "added TABLE public.hand_made",
        "removed FUNCTION public.touch()",
        "changed TABLE public.accounts",
    ]
    detailed = drift.lines(details=True)
    assert "    -    name text NOT NULL" in detailed
    assert "    +    name text" in detailed
    assert drift.as_dict() == {
        "added": ["TABLE public.hand_made"],
        "removed": ["FUNCTION public.touch()"],
        "changed": ["TABLE public.accounts"],
    }


def test_empty_drift() -> None:
    """An empty Drift is falsy and prints nothing."""
    assert not Drift()
    assert Drift().lines() == []


@pytest.mark.parametrize(
    ("key", "text"),
    [
        (("TABLE", "public", "foo"), "TABLE public.foo"),
        (("SCHEMA", "", "ops"), "SCHEMA ops"),
        (("CONSTRAINT", "public", "users users_pkey"), "CONSTRAINT public.users users_pkey"),
    ],
)
def test_describe(key: tuple[str, str, str], text: str) -> None:
    """describe() prints type, then schema-qualified pg_dump name."""
    assert describe(key) == text


# ---------------------------------------------------------------------------- pg_dump arguments


@pytest.mark.parametrize(
    ("schema", "table", "pattern"),
    [
        ("public", "migrate_job_history", '"public"."migrate_job_history"'),
        ("Ops", "Hist$Table", '"Ops"."Hist$Table"'),
        ("a", 'b"c', '"a"."b""c"'),
    ],
)
def test_exclude_pattern_is_quoted(schema: str, table: str, pattern: str) -> None:
    """The history table is excluded by a double-quoted pattern: no case folding, no wildcard characters."""
    assert exclude_pattern(HistoryTable(schema, table)) == pattern


def test_pg_dump_args() -> None:
    """Schema only, no owners/grants/tablespaces/subscriptions, comments kept, UTF-8, never a prompt."""
    args = pg_dump_args(HistoryTable("public", "migrate_job_history"))
    assert args[-1] == '--exclude-table="public"."migrate_job_history"'
    for option in ("--schema-only", "--no-owner", "--no-privileges", "--no-tablespaces", "--no-subscriptions"):
        assert option in args
    assert "--no-comments" not in args
    assert "--encoding=UTF8" in args
    assert "--no-password" in args


# ---------------------------------------------------------------------------- write_snapshot


def test_write_snapshot_only_when_changed(tmp_path: Path) -> None:
    """write_snapshot writes a new or different text (True) and leaves an identical file alone (False)."""
    path = tmp_path / "db" / "schema.sql"
    assert write_snapshot(path, "one\n") is True
    assert path.read_text() == "one\n"
    before = path.stat().st_mtime_ns
    os.utime(path, ns=(before - 10**9, before - 10**9))
    assert write_snapshot(path, "one\n") is False
    assert path.stat().st_mtime_ns == before - 10**9
    assert write_snapshot(path, "two\n") is True
    assert path.read_bytes() == b"two\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["schema.sql"]


def test_write_snapshot_keeps_the_file_mode(tmp_path: Path) -> None:
    """Rewriting keeps the existing file's permissions; a new file is 0644."""
    path = tmp_path / "schema.sql"
    write_snapshot(path, "one\n")
    assert path.stat().st_mode & 0o777 == 0o644
    path.chmod(0o664)
    write_snapshot(path, "two\n")
    assert path.stat().st_mode & 0o777 == 0o664


@pytest.mark.parametrize(
    "name", ["migrations/schema.sql", "migrations/init.sql", "./migrations/../migrations/schema.sql", "seed.sql"]
)
def test_snapshot_path_that_migrate_would_load_is_refused(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot that migrate would read (a .sql file in MIGRATE_DIR, MIGRATE_SCHEMA_LOAD_FILE) is a ConfigError."""
    monkeypatch.chdir(tmp_path)
    settings = load_settings(dir=Path("migrations"), schema_load_file=Path("seed.sql"))
    with pytest.raises(ConfigError, match=r"^MIGRATE_SCHEMA_FILE=.* which migrate reads"):
        check_schema_file(Path(name), settings)


@pytest.mark.parametrize("name", ["db/schema.sql", "schema.sql", "migrations/sub/schema.sql", "migrations/schema.txt"])
def test_snapshot_path_elsewhere_is_accepted(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Paths migrate does not read (dbmate's db/schema.sql, the repository root, a subfolder) are fine."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MIGRATE_SCHEMA_LOAD_FILE", raising=False)
    check_schema_file(Path(name), load_settings(dir=Path("migrations")))
