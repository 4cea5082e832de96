"""Pure tests of job.lint: each rule on a bad example and its safe alternative, directives, formats. No database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import job.lint
from job.lint import (
    RULES,
    Finding,
    format_github,
    format_human,
    format_json,
    has_errors,
    lint_migration,
    lint_migrations,
    rules_table,
)
from job.source import Migration, Version, checksum, load, parse_directives, split_sections

REPO_MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
MARK = "-- !"  # marks the line a finding is expected on


def migration(body: str, name: str = "0001_change.sql") -> Migration:
    """A Migration built in memory from `body` (wrapped in UP/DOWN markers unless it has its own)."""
    text = body if "-- migrate:up" in body else f"-- example\n-- UP\n{body}\n\n-- DOWN\nDROP TABLE users;\n"
    path = Path("migrations") / name
    up, down = split_sections(path, text)
    return Migration(
        version=Version.parse(name.split("_", 1)[0]),
        name=name.split("_", 1)[1].removesuffix(".sql"),
        path=path,
        checksum=checksum(text.encode()),
        up=up,
        down=down,
        directives=parse_directives(path, text),
    )


def marked_line(m: Migration) -> int:
    """The 1-based line of the file that carries the `-- !` marker."""
    lines = [n for n, text in enumerate(m.up.file_text.splitlines(), 1) if text.rstrip().endswith(MARK)]
    assert len(lines) == 1, lines
    return lines[0]


def rules_and_lines(findings: list[Finding]) -> list[tuple[str, int]]:
    return [(f.rule, f.line) for f in findings]


# ---------------------------------------------------------------------------- each rule: bad and safe

# (rule id, bad example with the offending line marked, its safe alternative)
RULE_CASES: list[tuple[str, str, str]] = [
    (
        "MJ001",
        "SELECT 1;\nCREATE INDEX users_email_idx -- !\n    ON users (email);",
        "CREATE INDEX CONCURRENTLY users_email_idx ON users (email);",
    ),
    (
        "MJ001",
        "CREATE UNIQUE INDEX ON users (lower(email)); -- !",
        "CREATE TABLE tags (id bigint, name text);\nCREATE UNIQUE INDEX tags_name_idx ON tags (name);",
    ),
    (
        "MJ002",
        "ALTER TABLE users ADD COLUMN token uuid\n    DEFAULT gen_random_uuid(); -- !",
        "ALTER TABLE users ADD COLUMN token uuid;\nALTER TABLE users ALTER COLUMN token SET DEFAULT gen_random_uuid();",
    ),
    (
        "MJ002",
        "ALTER TABLE users ADD COLUMN salt text NOT NULL DEFAULT md5(random()::text); -- !",
        "ALTER TABLE users ADD COLUMN seen_at timestamptz NOT NULL DEFAULT now();",
    ),
    (
        "MJ002",
        "ALTER TABLE users ADD COLUMN t timestamptz DEFAULT clock_timestamp(); -- !",
        "ALTER TABLE users ADD COLUMN t timestamptz DEFAULT current_timestamp;",
    ),
    (
        "MJ002",
        "ALTER TABLE users ADD COLUMN n bigint DEFAULT nextval('users_n_seq'); -- !",
        "ALTER TABLE users ADD COLUMN plan text NOT NULL DEFAULT 'free';",
    ),
    (
        "MJ002",
        "ALTER TABLE audit_log ADD COLUMN seq bigserial; -- !",
        "ALTER TABLE audit_log ADD COLUMN seq bigint;",
    ),
    (
        "MJ002",
        "ALTER TABLE plans ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY; -- !",
        "CREATE TABLE t (id bigint);\nALTER TABLE t ADD COLUMN uid uuid DEFAULT gen_random_uuid();",
    ),
    (
        "MJ003",
        "ALTER TABLE users ALTER COLUMN id TYPE bigint; -- !",
        "ALTER TABLE users ADD COLUMN id_new bigint;",
    ),
    (
        "MJ003",
        "ALTER TABLE users\n    ALTER COLUMN email TYPE varchar(100) -- !\n    USING email::varchar(100);",
        "CREATE TABLE t (a int);\nALTER TABLE t ALTER COLUMN a TYPE bigint;",
    ),
    (
        "MJ004",
        "ALTER TABLE users\n    ALTER COLUMN full_name SET NOT NULL; -- !",
        "-- migrate-job: transaction=off\n"
        "ALTER TABLE users ADD CONSTRAINT users_full_name_nn CHECK (full_name IS NOT NULL) NOT VALID;\n"
        "ALTER TABLE users VALIDATE CONSTRAINT users_full_name_nn;\n"
        "ALTER TABLE users ALTER COLUMN full_name SET NOT NULL;",
    ),
    (
        "MJ005",
        "ALTER TABLE projects\n    ADD CONSTRAINT projects_owner_fkey FOREIGN KEY (owner_id) -- !\n"
        "    REFERENCES users (id);",
        "ALTER TABLE projects ADD CONSTRAINT projects_owner_fkey\n"
        "    FOREIGN KEY (owner_id) REFERENCES users (id) NOT VALID;",
    ),
    (
        "MJ005",
        "ALTER TABLE projects ADD COLUMN owner_id bigint REFERENCES users (id); -- !",
        "CREATE TABLE invites (id bigint PRIMARY KEY, user_id bigint NOT NULL REFERENCES users (id));",
    ),
    (
        "MJ006",
        "ALTER TABLE users ADD CONSTRAINT users_email_check CHECK (email <> ''); -- !",
        "ALTER TABLE users ADD CONSTRAINT users_email_check CHECK (email <> '') NOT VALID;",
    ),
    (
        "MJ007",
        "ALTER TABLE users DROP COLUMN full_name; -- !",
        "-- migrate-job: lint_disable=MJ007\nALTER TABLE users DROP COLUMN full_name;",
    ),
    (
        "MJ008",
        "DROP TABLE audit_log; -- !",
        "CREATE TABLE scratch (id int);\nDROP TABLE scratch;",
    ),
    (
        "MJ009",
        "ALTER TABLE users RENAME COLUMN full_name TO display_name; -- !",
        "ALTER TABLE users ADD COLUMN display_name text;",
    ),
    (
        "MJ009",
        "ALTER TABLE users RENAME TO app_users; -- !",
        "CREATE TABLE draft (id int);\nALTER TABLE draft RENAME TO final;\nCREATE INDEX final_id_idx ON final (id);",
    ),
    ("MJ010", "VACUUM FULL users; -- !", "VACUUM (ANALYZE) users;"),
    ("MJ010", "VACUUM (FULL, ANALYZE) users; -- !", "VACUUM (FULL false) users;"),
    ("MJ011", "CLUSTER users USING users_pkey; -- !", "ANALYZE users;"),
    (
        "MJ012",
        "-- migrate-job: transaction=on\nCREATE INDEX CONCURRENTLY users_email_idx ON users (email); -- !",
        "CREATE INDEX CONCURRENTLY users_email_idx ON users (email);",
    ),
    (
        "MJ012",
        "BEGIN;\nDROP INDEX CONCURRENTLY users_email_idx; -- !\nCOMMIT;",
        "DROP INDEX CONCURRENTLY users_email_idx;",
    ),
    (
        "MJ012",
        "-- migrate:up transaction:true\nREINDEX INDEX CONCURRENTLY users_email_idx; -- !\n",
        "-- migrate:up\nREINDEX INDEX CONCURRENTLY users_email_idx;\n",
    ),
    (
        "MJ013",
        "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email); -- !",
        "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email_idx;",
    ),
    (
        "MJ013",
        "ALTER TABLE project_members ADD PRIMARY KEY (project_id, user_id); -- !",
        "ALTER TABLE project_members ADD CONSTRAINT project_members_pkey PRIMARY KEY USING INDEX pm_idx;",
    ),
    (
        "MJ014",
        "LOCK TABLE users IN ACCESS EXCLUSIVE MODE; -- !",
        "LOCK TABLE users IN SHARE UPDATE EXCLUSIVE MODE;",
    ),
    ("MJ015", "TRUNCATE audit_log; -- !", "DELETE FROM audit_log WHERE at < now() - interval '90 days';"),
    (
        "MJ016",
        "ALTER TABLE users ADD COLUMN email_lower text\n    GENERATED ALWAYS AS (lower(email)) STORED; -- !",
        "ALTER TABLE users ADD COLUMN email_lower text;",
    ),
    ("MJ017", "REINDEX TABLE users; -- !", "REINDEX TABLE CONCURRENTLY users;"),
    ("MJ018", "DROP INDEX users_email_idx; -- !", "DROP INDEX CONCURRENTLY users_email_idx;"),
    (
        "MJ019",
        "ALTER TABLE audit_log SET UNLOGGED; -- !",
        "ALTER TABLE audit_log SET (autovacuum_vacuum_scale_factor = 0.01);",
    ),
    (
        "MJ020",
        "ALTER TABLE users ADD CONSTRAINT users_name_nn CHECK (full_name IS NOT NULL) NOT VALID;\n"
        "ALTER TABLE users VALIDATE CONSTRAINT users_name_nn; -- !",
        "ALTER TABLE users ADD CONSTRAINT users_name_nn CHECK (full_name IS NOT NULL) NOT VALID;",
    ),
    (
        "MJ021",
        "REFRESH MATERIALIZED VIEW account_stats; -- !",
        "REFRESH MATERIALIZED VIEW CONCURRENTLY account_stats;",
    ),
    (
        "MJ022",
        "ALTER TABLE users ADD COLUMN email_domain text;\n"
        "UPDATE users SET email_domain = split_part(email, '@', 2); -- !",
        "-- migrate-job: transaction=off\n"
        "ALTER TABLE users ADD COLUMN email_domain text;\n"
        "UPDATE users SET email_domain = split_part(email, '@', 2) WHERE id BETWEEN 1 AND 10000;",
    ),
    (
        "MJ023",
        "CREATE TABLE audit (id int);\nCREATE INDEX CONCURRENTLY users_email ON users (email); -- !",
        "CREATE INDEX CONCURRENTLY users_email ON users (email);",
    ),
]
CASE_IDS = [f"{rule}-{n}" for n, (rule, _, _) in enumerate(RULE_CASES)]


@pytest.mark.parametrize(("rule", "bad", "safe"), RULE_CASES, ids=CASE_IDS)
def test_rule_fires_on_bad_example(rule: str, bad: str, safe: str) -> None:
    """The bad example yields exactly one finding: the rule's id, severity and the marked line."""
    m = migration(bad)
    findings = lint_migration(m)
    assert rules_and_lines(findings) == [(rule, marked_line(m))]
    (finding,) = findings
    assert finding.severity == RULES[rule].severity
    assert finding.file == "migrations/0001_change.sql"
    assert finding.version == "1"
    assert finding.message and finding.hint


@pytest.mark.parametrize(("rule", "bad", "safe"), RULE_CASES, ids=CASE_IDS)
def test_rule_silent_on_safe_alternative(rule: str, bad: str, safe: str) -> None:
    """The safe alternative yields no finding at all."""
    assert lint_migration(migration(safe)) == []


def test_every_rule_has_a_case() -> None:
    """Every rule except the meta ones (MJ000, MJ099) is exercised by RULE_CASES."""
    assert {rule for rule, _, _ in RULE_CASES} == set(RULES) - {"MJ000", "MJ099"}


def test_rules_are_documented_in_the_module_docstring() -> None:
    """Each rule id, name and severity appears in job.lint's docstring."""
    doc = job.lint.__doc__ or ""
    for rule in RULES.values():
        assert rule.severity in ("error", "warning")
        assert f"{rule.id} {rule.severity:<8} {rule.name}:" in doc


# ---------------------------------------------------------------------------- positions, DOWN, syntax


def test_finding_points_at_the_constraint_inside_a_multi_line_statement() -> None:
    """A finding on the second command of a multi-line ALTER TABLE points at that command's line and column."""
    m = migration(
        "ALTER TABLE users\n    ADD COLUMN nickname text,\n    ADD CONSTRAINT users_nick_check CHECK (nickname <> '');"
    )
    (finding,) = lint_migration(m)
    assert (finding.rule, finding.line, finding.column) == ("MJ006", 5, 5)


def test_repeatable_migration_has_no_version() -> None:
    """Findings of a repeatable (version None) migration carry version None."""
    m = migration("DROP TABLE audit_log;")
    repeatable = Migration(None, "views", m.path, m.checksum, m.up, m.down, m.directives, "flyway")
    assert [(f.rule, f.version) for f in lint_migration(repeatable)] == [("MJ008", None)]


def test_down_section_is_not_linted() -> None:
    """DROP TABLE in the DOWN section (and the wrapper's DOWN) produces nothing."""
    assert lint_migration(migration("CREATE TABLE t (id int);")) == []


def test_syntax_error_is_one_finding() -> None:
    """An unparseable UP section yields a single MJ000 error at the parser's position."""
    findings = lint_migration(migration("-- migrate-job: lint_disable=MJ000\nSELECT 1;\nSELEC 2;"))
    assert rules_and_lines(findings) == [("MJ000", 5)]
    assert "syntax error" in findings[0].message


# ---------------------------------------------------------------------------- state across statements/files


@pytest.mark.parametrize(
    ("alter", "rewrites"),
    [
        ("ALTER COLUMN name TYPE varchar(100)", False),
        ("ALTER COLUMN name TYPE varchar", False),
        ("ALTER COLUMN name TYPE text", False),
        ("ALTER COLUMN name TYPE varchar(20)", True),
        ("ALTER COLUMN code TYPE varchar", False),
        ("ALTER COLUMN code TYPE varchar(10)", True),
        ("ALTER COLUMN price TYPE numeric(12,2)", False),
        ("ALTER COLUMN price TYPE numeric", False),
        ("ALTER COLUMN price TYPE numeric(12,3)", True),
        ("ALTER COLUMN n TYPE bigint", True),
        ('ALTER COLUMN name TYPE varchar(100) COLLATE "C"', True),
        ("ALTER COLUMN unknown TYPE text", True),
    ],
)
def test_alter_type_widening_known_from_earlier_migration(alter: str, rewrites: bool) -> None:
    """With the old type known from an earlier file, binary-compatible changes are not reported."""
    create = migration(
        "CREATE TABLE items (name varchar(50), code text, price numeric(10,2), n int);", "0001_items.sql"
    )
    change = migration(f"ALTER TABLE items {alter};", "0002_change.sql")
    expected = [("MJ003", 3)] if rewrites else []
    assert rules_and_lines(lint_migrations([create, change])) == expected


def test_alter_type_without_history_is_reported() -> None:
    """Linting the ALTER alone (old type unknown) reports even a widening."""
    change = migration("ALTER TABLE items ALTER COLUMN name TYPE varchar(100);", "0002_change.sql")
    assert rules_and_lines(lint_migration(change)) == [("MJ003", 3)]


def test_not_null_pattern_across_three_migrations() -> None:
    """CHECK NOT VALID, VALIDATE and SET NOT NULL in three migrations: silent; the last one alone: MJ004."""
    files = [
        migration("ALTER TABLE users ADD CHECK (full_name IS NOT NULL) NOT VALID;", "0001_check.sql"),
        migration("ALTER TABLE users VALIDATE CONSTRAINT users_full_name_check;", "0002_validate.sql"),
        migration("ALTER TABLE users ALTER COLUMN full_name SET NOT NULL;", "0003_not_null.sql"),
    ]
    assert lint_migrations(files) == []
    assert rules_and_lines(lint_migration(files[2])) == [("MJ004", 3)]


def test_set_not_null_other_column_still_reported() -> None:
    """A validated CHECK on one column does not excuse SET NOT NULL on another."""
    m = migration(
        "-- migrate-job: transaction=off\n"
        "ALTER TABLE users ADD CONSTRAINT c CHECK (full_name IS NOT NULL) NOT VALID;\n"
        "ALTER TABLE users VALIDATE CONSTRAINT c;\n"
        "ALTER TABLE users ALTER COLUMN email SET NOT NULL; -- !"
    )
    assert rules_and_lines(lint_migration(m)) == [("MJ004", marked_line(m))]


def test_statements_on_a_table_created_in_the_same_migration_are_fine() -> None:
    """Index, constraints, type change, NOT NULL, drop and truncate on a new table: no findings."""
    m = migration(
        "CREATE TABLE public.events (id bigint, user_id bigint, kind text);\n"
        "CREATE INDEX events_user_idx ON events (user_id);\n"
        "ALTER TABLE events ADD CONSTRAINT events_user_fkey FOREIGN KEY (user_id) REFERENCES users (id),\n"
        "    ADD CONSTRAINT events_kind_check CHECK (kind <> ''),\n"
        "    ADD PRIMARY KEY (id),\n"
        "    ALTER COLUMN kind TYPE varchar(20),\n"
        "    ALTER COLUMN kind SET NOT NULL,\n"
        "    ADD COLUMN token uuid DEFAULT gen_random_uuid();\n"
        "UPDATE events SET kind = 'x';\n"
        "DROP INDEX events_user_idx;\n"
        "TRUNCATE events;\n"
        "ALTER TABLE events DROP COLUMN token;"
    )
    assert lint_migration(m) == []


def test_one_statement_can_yield_several_findings() -> None:
    """Each offending command of one ALTER TABLE is reported, in order, at the command's own position."""
    m = migration(
        "ALTER TABLE users ALTER COLUMN id TYPE bigint, DROP COLUMN full_name, ALTER COLUMN email SET NOT NULL;"
    )
    assert [(f.rule, f.line, f.column) for f in lint_migration(m)] == [
        ("MJ003", 3, 19),
        ("MJ007", 3, 48),
        ("MJ004", 3, 71),
    ]


@pytest.mark.parametrize(
    "head",
    ['ALTER TABLE ONLY "public"."users"', "ALTER TABLE IF EXISTS public.users *", "ALTER TABLE users /* c, d */"],
)
def test_command_positions_in_a_multi_line_alter_table(head: str) -> None:
    """Commands are located past qualified/quoted names, commas inside (), [] and comments, one per line."""
    m = migration(
        f"{head}\n"
        "    ALTER COLUMN score TYPE numeric(10,2) USING ARRAY[1,2] -- !\n"
        "    , ADD COLUMN note text, -- a, b\n"
        "    DROP COLUMN full_name;"
    )
    assert [(f.rule, f.line, f.column) for f in lint_migration(m)] == [("MJ003", 4, 5), ("MJ007", 6, 5)]


# ---------------------------------------------------------------------------- lint_disable directive


BAD_PAIR = "CREATE INDEX users_email_idx ON users (email);\nALTER TABLE users DROP COLUMN full_name;"


def test_lint_disable_directive_is_parsed() -> None:
    """`lint_disable` is a known directive: comma-separated ids, upper-cased, `-` spelling accepted."""
    directives = parse_directives(Path("x.sql"), "-- migrate-job: lint-disable=mj001,MJ007 transaction=off\n")
    assert directives.lint_disable == ("MJ001", "MJ007")
    assert directives.transaction is False
    assert parse_directives(Path("x.sql"), "select 1;\n").lint_disable == ()


@pytest.mark.parametrize(
    ("directive", "expected"),
    [
        ("", ["MJ001", "MJ007"]),
        ("-- migrate-job: lint_disable=MJ001\n", ["MJ007"]),
        ("-- migrate-job: lint_disable=MJ007\n", ["MJ001"]),
        ("-- migrate-job: lint_disable=MJ001,MJ007\n", []),
        ("-- migrate-job: lint_disable=MJ003\n", ["MJ001", "MJ007"]),
    ],
)
def test_lint_disable_skips_only_the_named_rules(directive: str, expected: list[str]) -> None:
    """Disabling one rule for a file leaves the other rules active."""
    assert [f.rule for f in lint_migration(migration(directive + BAD_PAIR))] == expected


def test_lint_disable_unknown_rule_is_reported() -> None:
    """A rule id that does not exist is reported as MJ099 on the directive's line; the rest still applies."""
    findings = lint_migration(migration("-- migrate-job: lint_disable=MJ001,MJ999\n" + BAD_PAIR))
    assert rules_and_lines(findings) == [("MJ099", 3), ("MJ007", 5)]
    assert "MJ999" in findings[0].message


# ---------------------------------------------------------------------------- the repository's migrations


def test_repository_migrations_expected_findings() -> None:
    """The example migrations: only the FK on existing accounts (0004) and the two in-transaction backfills."""
    findings = lint_migrations(load(REPO_MIGRATIONS))
    assert [(Path(f.file).name, f.rule, f.line) for f in findings] == [
        ("0004_seed_plans.sql", "MJ005", 15),
        ("0005_backfill_user_domain.sql", "MJ022", 5),
        ("0007_project_status_enum.sql", "MJ022", 6),
    ]
    assert has_errors(findings)


@pytest.mark.parametrize(
    "name",
    [
        "0001_create_accounts.sql",
        "0002_create_projects.sql",
        "0003_audit_trigger.sql",
        "0006_index_users_domain_concurrently.sql",
    ],
)
def test_repository_clean_migrations(name: str) -> None:
    """New tables, a trigger function and a proper CREATE INDEX CONCURRENTLY produce no findings."""
    (m,) = [m for m in load(REPO_MIGRATIONS) if m.filename == name]
    assert lint_migration(m) == []


# ---------------------------------------------------------------------------- output formats


def two_findings() -> list[Finding]:
    return lint_migration(migration(BAD_PAIR))


def test_format_human() -> None:
    """Human format: `file:line:col: RULE severity: message` then an indented hint."""
    out = format_human(two_findings())
    lines = out.splitlines()
    assert lines[0].startswith("migrations/0001_change.sql:3:1: MJ001 error: CREATE INDEX users_email_idx")
    assert lines[1].startswith("    hint: CREATE INDEX CONCURRENTLY")
    assert lines[2].startswith("migrations/0001_change.sql:4:19: MJ007 warning: DROP COLUMN full_name")
    assert len(lines) == 4
    assert format_human([]) == ""


def test_format_json() -> None:
    """JSON format parses, lists every field of each finding and counts by severity."""
    data = json.loads(format_json(two_findings()))
    assert data["counts"] == {"error": 1, "warning": 1}
    first = data["findings"][0]
    assert first["rule"] == "MJ001"
    assert (first["file"], first["line"], first["column"], first["version"]) == (
        "migrations/0001_change.sql",
        3,
        1,
        "1",
    )
    assert set(first) == {"rule", "severity", "file", "line", "column", "message", "hint", "version"}
    assert json.loads(format_json([])) == {"findings": [], "counts": {"error": 0, "warning": 0}}


def test_format_github() -> None:
    """GitHub format: one `::error`/`::warning` workflow command per finding with file, line, col and title."""
    lines = format_github(two_findings()).splitlines()
    assert lines[0].startswith("::error file=migrations/0001_change.sql,line=3,col=1,title=MJ001::CREATE INDEX")
    assert lines[1].startswith("::warning file=migrations/0001_change.sql,line=4,col=19,title=MJ007::DROP COLUMN")
    assert all("(hint" not in line and line.endswith(")") for line in lines)


def test_format_github_escapes() -> None:
    """Newlines and % in messages, and `,`/`:` in the file name, are escaped as GitHub requires."""
    finding = Finding("MJ001", "error", "dir,a/b:c.sql", 1, 2, "50% done\nnext", "h", None)
    assert (
        format_github([finding]) == "::error file=dir%2Ca/b%3Ac.sql,line=1,col=2,title=MJ001::50%25 done%0Anext (h)\n"
    )


def test_has_errors() -> None:
    """has_errors is true only when some finding is an error."""
    findings = two_findings()
    assert has_errors(findings)
    assert not has_errors([f for f in findings if f.severity == "warning"])
    assert not has_errors([])


def test_rules_table() -> None:
    """The markdown table has a header and one row per rule with its severity and safe alternative."""
    lines = rules_table().splitlines()
    assert lines[0] == "| Rule | Severity | What | Safe alternative |"
    assert len(lines) == 2 + len(RULES)
    assert "| MJ001 `create-index-blocking` | error |" in lines[3]
    assert all(line.count("|") == 5 for line in lines)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("CREATE TABLE audit (id int);\nDO $$ BEGIN COMMIT; END $$;", [("MJ023", 4)]),
        ("DO $$ BEGIN COMMIT; END $$;", []),
        ("CREATE INDEX CONCURRENTLY a ON users (a);\nCREATE INDEX CONCURRENTLY b ON users (b);", []),
        ("-- migrate-job: transaction=off\nCREATE TABLE audit (id int);\nVACUUM users;", []),
    ],
)
def test_forced_out_of_transaction_warning(body: str, expected: list[tuple[str, int]]) -> None:
    """MJ023 only when a detected non-transactional statement drags other statements out of the transaction."""
    assert rules_and_lines(lint_migration(migration(body))) == expected
