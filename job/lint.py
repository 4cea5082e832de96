"""Safety lint for migrations: operations that lock or rewrite tables on a live database.

Pure: no database. Each UP statement is parsed with PostgreSQL's own parser (pglast, as in
`job.sqlscan`) and checked against the rules below; findings carry `file:line:column` from the
statement offsets of `Section.statements`, so they point at the same places as the runner's errors.

"Existing table" means a table not created earlier in the same migration: a table created in the
migration is empty and invisible to other sessions until commit, so indexing, constraining or
rewriting it is harmless. PostgreSQL 11 or later is assumed (non-volatile ADD COLUMN defaults
are metadata-only).

Rules (id, severity, name: what it catches → safe alternative):

  MJ000 error    syntax-error: the UP section does not parse (nothing else is checked)
  MJ001 error    create-index-blocking: CREATE INDEX without CONCURRENTLY on an existing table
                 blocks writes for the whole build → CREATE INDEX CONCURRENTLY, in a migration of its own
  MJ002 error    add-column-volatile-default: ADD COLUMN with a volatile default (random(),
                 clock_timestamp(), gen_random_uuid(), nextval(), serial, identity, ...) rewrites the table
                 under ACCESS EXCLUSIVE → add the column without default, SET DEFAULT, backfill in batches
  MJ003 error    alter-column-type: ALTER COLUMN ... TYPE rewrites the table and rebuilds its indexes
                 (binary-compatible changes such as varchar(n) → varchar(m ≥ n) / text are not reported
                 when the old type is known from migrations linted in the same run)
                 → add a new column, backfill, switch the code over, drop the old one
  MJ004 error    set-not-null: SET NOT NULL scans the table under ACCESS EXCLUSIVE, unless a validated
                 CHECK (col IS NOT NULL) exists (added earlier in this migration or an earlier one of the run)
                 → ADD CONSTRAINT ... CHECK (col IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT, then SET NOT NULL
  MJ005 error    add-foreign-key-validating: ADD FOREIGN KEY without NOT VALID scans the table while holding
                 SHARE ROW EXCLUSIVE on both tables → ADD CONSTRAINT ... NOT VALID, VALIDATE in a later migration
  MJ006 error    add-check-validating: ADD CHECK without NOT VALID scans the table under ACCESS EXCLUSIVE
                 → ADD CONSTRAINT ... NOT VALID, VALIDATE in a later migration
  MJ007 warning  drop-column: code still running may use the column → stop using it in a deploy first
  MJ008 warning  drop-table: code still running may use the table → stop using it in a deploy first
  MJ009 error    rename: renaming a table, view or column breaks the code that is running during the deploy
                 → add the new one and dual-write (or a view), move the code, drop the old one later
  MJ010 error    vacuum-full: VACUUM FULL rewrites the table under ACCESS EXCLUSIVE → pg_repack, or plain VACUUM
  MJ011 error    cluster: CLUSTER rewrites the table under ACCESS EXCLUSIVE → pg_repack
  MJ012 error    concurrently-in-transaction: CONCURRENTLY (or another statement PostgreSQL refuses in a
                 transaction block, e.g. VACUUM) in a file forced transactional or between the file's own
                 BEGIN and COMMIT: it fails → remove transaction=on / the BEGIN…COMMIT, own migration
  MJ013 error    add-unique-constraint: ADD UNIQUE / PRIMARY KEY / EXCLUDE without USING INDEX builds the index
                 under ACCESS EXCLUSIVE → CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... USING INDEX
  MJ014 warning  lock-table: explicit LOCK TABLE in a mode that blocks writes, held to the end of the
                 transaction → let the DDL take its own locks, keep the transaction short
  MJ015 warning  truncate: TRUNCATE takes ACCESS EXCLUSIVE and removes every row → DELETE in batches
  MJ016 error    add-column-generated-stored: ADD COLUMN ... GENERATED ALWAYS AS (...) STORED rewrites the
                 table → plain column + trigger + batched backfill (or a VIRTUAL column on PostgreSQL 18)
  MJ017 error    reindex-blocking: REINDEX without CONCURRENTLY blocks writes (and reads using the index)
                 → REINDEX ... CONCURRENTLY, in a migration of its own
  MJ018 warning  drop-index-blocking: DROP INDEX without CONCURRENTLY takes ACCESS EXCLUSIVE on the table
                 → DROP INDEX CONCURRENTLY, in a migration of its own
  MJ019 error    table-rewrite: SET TABLESPACE / SET LOGGED / SET UNLOGGED / SET ACCESS METHOD rewrite the
                 relation under ACCESS EXCLUSIVE → pg_repack or a maintenance window
  MJ020 warning  validate-in-same-transaction: VALIDATE CONSTRAINT in the same transaction as its
                 ADD ... NOT VALID: the scan runs while the ADD's ACCESS EXCLUSIVE lock is still held
                 → VALIDATE in a later migration (or a file with transaction=off)
  MJ021 warning  refresh-matview-blocking: REFRESH MATERIALIZED VIEW without CONCURRENTLY blocks reads of the
                 view → REFRESH MATERIALIZED VIEW CONCURRENTLY (needs a unique index on the view)
  MJ022 warning  backfill-under-lock: UPDATE / DELETE of a table that an earlier ALTER TABLE of the same
                 transaction locked ACCESS EXCLUSIVE: reads and writes wait for the whole backfill
                 → backfill in a later migration with transaction=off, in batches
  MJ023 warning  file-forced-out-of-transaction: one statement that cannot run in a transaction block
                 (CONCURRENTLY, VACUUM, a DO block that commits, ...) makes a file with other statements run
                 statement by statement: a later failure leaves the earlier ones committed
                 → split it into its own migration
  MJ099 warning  unknown-lint-disable: `lint_disable` names a rule that does not exist

Disable rules for one file with `-- migrate-job: lint_disable=MJ001,MJ007` (comma-separated, no
spaces). MJ000 cannot be disabled. Drops are warnings (dropping is the last step of the safe way
to remove something; the lint cannot know whether the code stopped using it); renames are errors
(there is no safe moment for a rename while old and new code run side by side).

`lint_migrations` carries what it learned across the files it is given (validated NOT NULL
checks, column types), so the three-migration NOT NULL pattern and type widening are recognised;
`lint_migration` on one file knows only that file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from pglast import ast, enums
from pglast import parser as pg_parser
from pglast.stream import RawStream

from job.errors import SourceError
from job.source import Migration
from job.sqlscan import Statement

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Rule:
    """One lint rule: its id, severity and the safer alternative it suggests."""

    id: str
    name: str
    severity: str  # "error" | "warning"
    summary: str
    alternative: str


@dataclass(frozen=True)
class Finding:
    """One lint finding: the rule, where it is (file:line:column) and the message."""

    rule: str
    severity: str
    file: str
    line: int
    column: int
    message: str
    hint: str
    version: str | None


_RULE_LIST = (
    Rule("MJ000", "syntax-error", ERROR, "The UP section does not parse", "Fix the SQL"),
    Rule(
        "MJ001",
        "create-index-blocking",
        ERROR,
        "CREATE INDEX without CONCURRENTLY on an existing table blocks writes for the whole build",
        "CREATE INDEX CONCURRENTLY, in a migration of its own",
    ),
    Rule(
        "MJ002",
        "add-column-volatile-default",
        ERROR,
        "ADD COLUMN with a volatile default (random(), clock_timestamp(), gen_random_uuid(), nextval(), "
        "serial, identity) rewrites the table under ACCESS EXCLUSIVE",
        "Add the column without a default, then SET DEFAULT, then backfill in batches",
    ),
    Rule(
        "MJ003",
        "alter-column-type",
        ERROR,
        "ALTER COLUMN ... TYPE rewrites the table and rebuilds its indexes under ACCESS EXCLUSIVE",
        "Add a new column, backfill it in batches, switch the code over, drop the old column",
    ),
    Rule(
        "MJ004",
        "set-not-null",
        ERROR,
        "SET NOT NULL scans the whole table under ACCESS EXCLUSIVE",
        "ADD CONSTRAINT ... CHECK (col IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT in a later migration, "
        "then SET NOT NULL",
    ),
    Rule(
        "MJ005",
        "add-foreign-key-validating",
        ERROR,
        "ADD FOREIGN KEY without NOT VALID scans the table, blocking writes on both tables",
        "ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID, then VALIDATE CONSTRAINT in a later migration",
    ),
    Rule(
        "MJ006",
        "add-check-validating",
        ERROR,
        "ADD CHECK without NOT VALID scans the table under ACCESS EXCLUSIVE",
        "ADD CONSTRAINT ... CHECK (...) NOT VALID, then VALIDATE CONSTRAINT in a later migration",
    ),
    Rule(
        "MJ007",
        "drop-column",
        WARNING,
        "DROP COLUMN: code still running may use the column",
        "Deploy code that no longer uses the column first, then drop it",
    ),
    Rule(
        "MJ008",
        "drop-table",
        WARNING,
        "DROP TABLE: code still running may use the table",
        "Deploy code that no longer uses the table first, then drop it",
    ),
    Rule(
        "MJ009",
        "rename",
        ERROR,
        "Renaming a table, view or column breaks the code running during the deploy",
        "Add the new column/table and dual-write (or a view with the old name), move the code, drop the old one",
    ),
    Rule(
        "MJ010",
        "vacuum-full",
        ERROR,
        "VACUUM FULL rewrites the table under ACCESS EXCLUSIVE",
        "pg_repack, or plain VACUUM",
    ),
    Rule("MJ011", "cluster", ERROR, "CLUSTER rewrites the table under ACCESS EXCLUSIVE", "pg_repack"),
    Rule(
        "MJ012",
        "concurrently-in-transaction",
        ERROR,
        "CONCURRENTLY (or VACUUM, ...) in a forced transaction or inside the file's BEGIN … COMMIT: it fails",
        "Remove `transaction=on` / the BEGIN and COMMIT; put the statement in a migration of its own",
    ),
    Rule(
        "MJ013",
        "add-unique-constraint",
        ERROR,
        "ADD UNIQUE / PRIMARY KEY / EXCLUDE without USING INDEX builds an index under ACCESS EXCLUSIVE",
        "CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... UNIQUE / PRIMARY KEY USING INDEX",
    ),
    Rule(
        "MJ014",
        "lock-table",
        WARNING,
        "LOCK TABLE in a mode that blocks writes, held until the transaction ends",
        "Let each statement take its own lock; keep the migration short",
    ),
    Rule(
        "MJ015",
        "truncate",
        WARNING,
        "TRUNCATE takes ACCESS EXCLUSIVE and removes every row",
        "DELETE in batches, or make sure nothing uses the table any more",
    ),
    Rule(
        "MJ016",
        "add-column-generated-stored",
        ERROR,
        "ADD COLUMN ... GENERATED ALWAYS AS (...) STORED rewrites the table",
        "Plain column kept up to date by a trigger, backfilled in batches (or VIRTUAL on PostgreSQL 18+)",
    ),
    Rule(
        "MJ017",
        "reindex-blocking",
        ERROR,
        "REINDEX without CONCURRENTLY blocks writes, and reads that use the index",
        "REINDEX ... CONCURRENTLY, in a migration of its own",
    ),
    Rule(
        "MJ018",
        "drop-index-blocking",
        WARNING,
        "DROP INDEX without CONCURRENTLY takes ACCESS EXCLUSIVE on the table",
        "DROP INDEX CONCURRENTLY, in a migration of its own",
    ),
    Rule(
        "MJ019",
        "table-rewrite",
        ERROR,
        "SET TABLESPACE / SET LOGGED / SET UNLOGGED / SET ACCESS METHOD rewrite the relation under ACCESS EXCLUSIVE",
        "pg_repack, or a maintenance window",
    ),
    Rule(
        "MJ020",
        "validate-in-same-transaction",
        WARNING,
        "VALIDATE CONSTRAINT in the transaction that added it NOT VALID: scans while ACCESS EXCLUSIVE is held",
        "VALIDATE CONSTRAINT in a later migration (or in a file with `transaction=off`)",
    ),
    Rule(
        "MJ021",
        "refresh-matview-blocking",
        WARNING,
        "REFRESH MATERIALIZED VIEW without CONCURRENTLY blocks reads of the view",
        "REFRESH MATERIALIZED VIEW CONCURRENTLY (needs a unique index on the view)",
    ),
    Rule(
        "MJ022",
        "backfill-under-lock",
        WARNING,
        "UPDATE / DELETE of a table an earlier ALTER TABLE in the same transaction locked ACCESS EXCLUSIVE",
        "Backfill in a later migration with `transaction=off`, in batches (UPDATE ... WHERE id BETWEEN ...)",
    ),
    Rule(
        "MJ023",
        "file-forced-out-of-transaction",
        WARNING,
        "One statement that cannot run in a transaction block makes the whole multi-statement file run outside one",
        "Split that statement into its own migration",
    ),
    Rule(
        "MJ099",
        "unknown-lint-disable",
        WARNING,
        "`lint_disable` names a rule that does not exist",
        "Use rule ids from this table, comma-separated without spaces",
    ),
)

RULES: dict[str, Rule] = {r.id: r for r in _RULE_LIST}

# Functions whose result changes per row: as a column default on ADD COLUMN they force a rewrite.
VOLATILE_FUNCTIONS = frozenset(
    {
        "random",
        "random_normal",
        "setseed",
        "clock_timestamp",
        "timeofday",
        "gen_random_uuid",
        "gen_random_bytes",
        "uuid_generate_v1",
        "uuid_generate_v1mc",
        "uuid_generate_v4",
        "uuidv4",
        "uuidv7",
        "nextval",
        "currval",
        "lastval",
    }
)
_SERIAL_TYPES = frozenset({"serial", "serial4", "bigserial", "serial8", "smallserial", "serial2"})

_AT = enums.AlterTableType
_CT = enums.ConstrType
_OT = enums.ObjectType
# ALTER TABLE subcommands that take ACCESS EXCLUSIVE (or at least block writes) until commit.
_STRONG = frozenset(
    {
        _AT.AT_AddColumn,
        _AT.AT_ColumnDefault,
        _AT.AT_DropNotNull,
        _AT.AT_SetNotNull,
        _AT.AT_DropColumn,
        _AT.AT_AddConstraint,
        _AT.AT_DropConstraint,
        _AT.AT_AlterColumnType,
        _AT.AT_AddIdentity,
        _AT.AT_SetIdentity,
        _AT.AT_DropIdentity,
        _AT.AT_SetTableSpace,
        _AT.AT_SetLogged,
        _AT.AT_SetUnLogged,
        _AT.AT_SetAccessMethod,
    }
)
_REWRITES = {
    _AT.AT_SetTableSpace: "SET TABLESPACE",
    _AT.AT_SetLogged: "SET LOGGED",
    _AT.AT_SetUnLogged: "SET UNLOGGED",
    _AT.AT_SetAccessMethod: "SET ACCESS METHOD",
}


# ---------------------------------------------------------------------------- state


@dataclass(frozen=True)
class _Type:
    """A column type as lint compares it: name, integer modifiers, array or not."""

    name: str
    mods: tuple[int, ...] | None  # None: a modifier that is not a plain integer
    array: bool


@dataclass
class _Knowledge:
    """What earlier migrations of the same run established (lint_migrations shares one)."""

    not_null_checks: dict[tuple[str, str], str] = field(default_factory=dict)  # (table, constraint) -> column
    valid_not_null: set[tuple[str, str]] = field(default_factory=set)  # (table, column)
    column_types: dict[tuple[str, str], _Type] = field(default_factory=dict)  # (table, column) -> type


@dataclass
class _State:
    """One migration being linted."""

    m: Migration
    know: _Knowledge
    created_tables: set[str] = field(default_factory=set)
    created_indexes: set[str] = field(default_factory=set)
    not_valid_added: dict[tuple[str, str], int] = field(default_factory=dict)  # (table, constraint) -> segment
    locked: dict[str, tuple[int, int]] = field(default_factory=dict)  # table -> (segment, line of the ALTER)
    block_line: int | None = None  # line of the file's own open BEGIN
    segment: int = 0  # transaction the current statement runs in
    findings: list[Finding] = field(default_factory=list)
    stmt: Statement | None = None
    at: int | None = None  # where the current ALTER TABLE command starts in the statement text

    def is_new(self, table: str) -> bool:
        return table in self.created_tables

    def report(self, rule_id: str, message: str, hint: str | None = None, location: int | None = None) -> None:
        assert self.stmt is not None
        rule = RULES[rule_id]
        if location is None:
            location = self.at
        offset = self.stmt.offset + (location if location is not None and 0 <= location < len(self.stmt.text) else 0)
        line, col = self.m.up.location(offset)
        self.findings.append(
            Finding(
                rule=rule.id,
                severity=rule.severity,
                file=str(self.m.up.path),
                line=line,
                column=col,
                message=message,
                hint=hint or rule.alternative,
                version=None if self.m.version is None else str(self.m.version),
            )
        )


# ---------------------------------------------------------------------------- helpers


def _table_key(schema: str | None, name: str) -> str:
    return name if schema in (None, "", "public") else f"{schema}.{name}"


def _rel_key(rv: ast.RangeVar | None) -> str:
    if rv is None:
        return ""
    return _table_key(rv.schemaname, rv.relname or "")


def _rel_text(rv: ast.RangeVar | None) -> str:
    if rv is None:
        return "?"
    return f"{rv.schemaname}.{rv.relname}" if rv.schemaname else str(rv.relname)


def _names(items: Iterable[Any] | None) -> list[str]:
    return [str(getattr(x, "sval", x)) for x in items or ()]


def _walk(node: Any) -> Iterator[ast.Node]:
    if isinstance(node, (tuple, list)):
        for item in node:
            yield from _walk(item)
    elif isinstance(node, ast.Node):
        yield node
        slots: Iterable[str] = getattr(type(node), "__slots__", ())
        for name in slots:
            yield from _walk(getattr(node, name, None))


def _volatile_call(expr: Any) -> str | None:
    for node in _walk(expr):
        if isinstance(node, ast.FuncCall):
            name = (_names(node.funcname) or [""])[-1].lower()
            if name in VOLATILE_FUNCTIONS:
                return name
    return None


def _type_of(tn: ast.TypeName | None) -> _Type | None:
    if tn is None:
        return None
    names = _names(tn.names)
    if not names:
        return None
    mods: tuple[int, ...] | None = ()
    for mod in tn.typmods or ():
        val = getattr(mod, "val", None)
        if isinstance(val, ast.Integer) and val.ival is not None:
            mods = (*(mods or ()), int(val.ival))
        else:
            mods = None
            break
    return _Type(names[-1].lower(), mods, bool(tn.arrayBounds))


def _no_rewrite(old: _Type, new: _Type) -> bool:
    """True for a binary-compatible change PostgreSQL makes without rewriting or reindexing."""
    if old.mods is None or new.mods is None or old.array != new.array:
        return False
    if old == new:
        return True
    o, n = old.name, new.name
    if o == "varchar" and n == "text":
        return True
    if o == "text" and n == "varchar":
        return not new.mods
    if o == "cidr" and n == "inet":
        return True
    if o == n and o in ("varchar", "varbit"):
        return not new.mods or (bool(old.mods) and new.mods[0] >= old.mods[0])
    if o == n == "numeric":
        if not new.mods:
            return True
        if not old.mods:
            return False
        old_scale = old.mods[1] if len(old.mods) > 1 else 0
        new_scale = new.mods[1] if len(new.mods) > 1 else 0
        return new_scale == old_scale and new.mods[0] >= old.mods[0]
    return False


def _not_null_column(expr: Any) -> str | None:
    """The column of a CHECK (col IS NOT NULL) expression (possibly AND-ed with others)."""
    if (
        isinstance(expr, ast.NullTest)
        and expr.nulltesttype == enums.NullTestType.IS_NOT_NULL
        and isinstance(expr.arg, ast.ColumnRef)
    ):
        fields = _names(expr.arg.fields)
        return fields[-1] if fields else None
    if isinstance(expr, ast.BoolExpr) and expr.boolop == enums.BoolExprType.AND_EXPR:
        for arg in expr.args or ():
            col = _not_null_column(arg)
            if col:
                return col
    return None


def _sql(node: ast.Node | None, fallback: str) -> str:
    """SQL text of an expression (for hints), or `fallback(...)` if it cannot be printed."""
    try:
        return RawStream()(node) if node is not None else f"{fallback}(...)"
    except Exception:
        return f"{fallback}(...)"


def _loc(node: Any) -> int | None:
    loc = getattr(node, "location", None)
    return loc if isinstance(loc, int) and loc >= 0 else None


def _transaction_reason(m: Migration) -> str | None:
    if m.directives.transaction is True:
        return "the file is forced transactional by `-- migrate-job: transaction=on`"
    if m.directives.transaction is None and m.up.transaction is True:
        return "the file is forced transactional by its `transaction:true` marker"
    return None


# ---------------------------------------------------------------------------- checks


def _check_create_table(st: _State, stmt: ast.CreateStmt) -> None:
    table = _rel_key(stmt.relation)
    st.created_tables.add(table)
    for elt in stmt.tableElts or ():
        if isinstance(elt, ast.ColumnDef) and elt.colname:
            typ = _type_of(elt.typeName)
            if typ is not None:
                st.know.column_types[(table, elt.colname)] = typ
            for con in elt.constraints or ():
                if isinstance(con, ast.Constraint) and con.contype == _CT.CONSTR_CHECK:
                    _remember_check(st, table, con, validated=True, column=elt.colname)
        elif isinstance(elt, ast.Constraint) and elt.contype == _CT.CONSTR_CHECK:
            _remember_check(st, table, elt, validated=True)


def _remember_check(st: _State, table: str, con: ast.Constraint, *, validated: bool, column: str | None = None) -> None:
    col = _not_null_column(con.raw_expr)
    if col is None:
        return
    name = con.conname or f"{table.rsplit('.', 1)[-1]}_{column or col}_check"
    st.know.not_null_checks[(table, name)] = col
    if validated:
        st.know.valid_not_null.add((table, col))
    else:
        st.not_valid_added[(table, name)] = st.segment


def _check_index(st: _State, stmt: ast.IndexStmt) -> None:
    if stmt.idxname:
        st.created_indexes.add(stmt.idxname)
    table = _rel_key(stmt.relation)
    if stmt.concurrent or st.is_new(table):
        return
    what = "CREATE UNIQUE INDEX" if stmt.unique else "CREATE INDEX"
    name = f" {stmt.idxname}" if stmt.idxname else ""
    st.report(
        "MJ001",
        f"{what}{name} on existing table {_rel_text(stmt.relation)} without CONCURRENTLY blocks writes "
        "(SHARE lock) for the whole index build",
        f"{what} CONCURRENTLY{name} ON {_rel_text(stmt.relation)} (...) in a migration of its own "
        "(migrate-job runs it outside a transaction)",
    )


def _check_add_column(st: _State, table: str, rel: str, col: ast.ColumnDef) -> None:
    name = col.colname or "?"
    typ = _type_of(col.typeName)
    if typ is not None and col.colname:
        st.know.column_types[(table, col.colname)] = typ
    if st.is_new(table):
        return
    where = st.at if st.at is not None else _loc(col)
    if typ is not None and typ.name in _SERIAL_TYPES and not typ.array:
        st.report(
            "MJ002",
            f"ADD COLUMN {name} {typ.name} on {rel} fills every row from a sequence: "
            "table rewrite under ACCESS EXCLUSIVE",
            f"add {name} as a plain integer column, attach the sequence with SET DEFAULT nextval(...), "
            "then backfill existing rows in batches",
            where,
        )
    for con in col.constraints or ():
        if not isinstance(con, ast.Constraint):
            continue
        cloc = _loc(con) if _loc(con) is not None else where
        if con.contype == _CT.CONSTR_DEFAULT:
            fn = _volatile_call(con.raw_expr)
            if fn:
                st.report(
                    "MJ002",
                    f"ADD COLUMN {name} on {rel} with volatile default {fn}() rewrites the table "
                    "under ACCESS EXCLUSIVE",
                    f"ADD COLUMN {name} without a default, then ALTER COLUMN {name} SET DEFAULT "
                    f"{_sql(con.raw_expr, fn)}, then backfill existing rows in batches",
                    cloc,
                )
        elif con.contype == _CT.CONSTR_IDENTITY:
            st.report(
                "MJ002",
                f"ADD COLUMN {name} ... GENERATED AS IDENTITY on {rel} fills every row from a sequence: "
                "table rewrite under ACCESS EXCLUSIVE",
                f"add {name} as a plain column, backfill in batches, then ALTER COLUMN {name} ADD GENERATED ... "
                "AS IDENTITY",
                cloc,
            )
        elif con.contype == _CT.CONSTR_GENERATED and getattr(con, "generated_kind", "s") != "v":
            st.report(
                "MJ016",
                f"ADD COLUMN {name} ... GENERATED ALWAYS AS (...) STORED on {rel} rewrites the table "
                "under ACCESS EXCLUSIVE",
                location=cloc,
            )
        elif con.contype == _CT.CONSTR_FOREIGN and _validates(con):
            st.report(
                "MJ005",
                f"ADD COLUMN {name} ... REFERENCES on {rel} validates the foreign key with a table scan, "
                "blocking writes on both tables",
                f"ADD COLUMN {name} without REFERENCES, then ADD CONSTRAINT ... FOREIGN KEY ({name}) ... NOT VALID, "
                "then VALIDATE CONSTRAINT in a later migration",
                cloc,
            )
        elif con.contype == _CT.CONSTR_CHECK and _validates(con):
            st.report(
                "MJ006",
                f"ADD COLUMN {name} ... CHECK on {rel} validates every row under ACCESS EXCLUSIVE",
                f"ADD COLUMN {name} without the CHECK, then ADD CONSTRAINT ... CHECK (...) NOT VALID, "
                "then VALIDATE CONSTRAINT in a later migration",
                cloc,
            )
        elif con.contype in (_CT.CONSTR_UNIQUE, _CT.CONSTR_PRIMARY):
            kind = "UNIQUE" if con.contype == _CT.CONSTR_UNIQUE else "PRIMARY KEY"
            st.report(
                "MJ013",
                f"ADD COLUMN {name} ... {kind} on {rel} builds an index under ACCESS EXCLUSIVE",
                f"ADD COLUMN {name}, then CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... {kind} USING INDEX",
                cloc,
            )


def _validates(con: ast.Constraint) -> bool:
    """A constraint that checks existing rows when added (not NOT VALID, not NOT ENFORCED)."""
    return not con.skip_validation and getattr(con, "is_enforced", True) is not False


def _check_add_constraint(st: _State, table: str, rel: str, con: ast.Constraint) -> None:
    where = st.at if st.at is not None else _loc(con)
    label = f" {con.conname}" if con.conname else ""
    if con.contype == _CT.CONSTR_CHECK:
        _remember_check(st, table, con, validated=not con.skip_validation)
    if st.is_new(table):
        return
    if con.contype == _CT.CONSTR_FOREIGN and _validates(con):
        st.report(
            "MJ005",
            f"ADD CONSTRAINT{label} FOREIGN KEY on existing table {rel} without NOT VALID scans {rel} while "
            f"holding SHARE ROW EXCLUSIVE on {rel} and {_rel_text(con.pktable)} (blocks writes to both)",
            f"ADD CONSTRAINT{label} FOREIGN KEY ... NOT VALID, then ALTER TABLE {rel} VALIDATE CONSTRAINT"
            f"{label or ' <name>'} in a later migration",
            where,
        )
    elif con.contype == _CT.CONSTR_CHECK and _validates(con):
        st.report(
            "MJ006",
            f"ADD CONSTRAINT{label} CHECK on existing table {rel} without NOT VALID scans the table "
            "under ACCESS EXCLUSIVE",
            f"ADD CONSTRAINT{label} CHECK (...) NOT VALID, then ALTER TABLE {rel} VALIDATE CONSTRAINT"
            f"{label or ' <name>'} in a later migration",
            where,
        )
    elif con.contype in (_CT.CONSTR_UNIQUE, _CT.CONSTR_PRIMARY) and not con.indexname:
        kind = "UNIQUE" if con.contype == _CT.CONSTR_UNIQUE else "PRIMARY KEY"
        st.report(
            "MJ013",
            f"ADD CONSTRAINT{label} {kind} on existing table {rel} builds its index under ACCESS EXCLUSIVE "
            "(blocks reads and writes)",
            f"CREATE UNIQUE INDEX CONCURRENTLY <idx> ON {rel} (...) in its own migration, then "
            f"ALTER TABLE {rel} ADD CONSTRAINT{label or ' <name>'} {kind} USING INDEX <idx>",
            where,
        )
    elif con.contype == _CT.CONSTR_EXCLUSION:
        st.report(
            "MJ013",
            f"ADD CONSTRAINT{label} EXCLUDE on existing table {rel} builds its index under ACCESS EXCLUSIVE "
            "(blocks reads and writes)",
            "exclusion constraints cannot be added USING INDEX: build them on a new table and swap, "
            "or schedule a maintenance window",
            where,
        )


def _check_alter_type(st: _State, table: str, rel: str, cmd: ast.AlterTableCmd) -> None:
    col = cmd.name or "?"
    definition = cmd.def_ if isinstance(cmd.def_, ast.ColumnDef) else None
    new = _type_of(definition.typeName) if definition else None
    old = st.know.column_types.get((table, col))
    if new is not None:
        st.know.column_types[(table, col)] = new
    if st.is_new(table):
        return
    plain = definition is not None and definition.raw_default is None and definition.collClause is None
    if plain and old is not None and new is not None and _no_rewrite(old, new):
        return
    st.report(
        "MJ003",
        f"ALTER COLUMN {col} TYPE on existing table {rel} rewrites the table and rebuilds its indexes "
        "under ACCESS EXCLUSIVE (blocks reads and writes)",
        f"add a new column of the new type, backfill it in batches (keep it in sync with a trigger), "
        f"switch the code over, then drop {col}",
    )


def _command_starts(text: str, relation: ast.RangeVar | None, count: int) -> list[int] | None:
    """Where each comma-separated command of an ALTER TABLE starts in `text` (None if unsure)."""
    at = _loc(relation)
    if at is None:
        return None
    tokens = [t for t in pg_parser.scan(text) if t.name not in ("SQL_COMMENT", "C_COMMENT") and t.start >= at]
    i = 1  # tokens[0] is the relation name: skip `schema . name` and an optional `*`
    while i + 1 < len(tokens) and tokens[i].name == "ASCII_46":
        i += 2
    if i < len(tokens) and tokens[i].name == "ASCII_42":
        i += 1
    if i >= len(tokens):
        return None
    starts, depth = [tokens[i].start], 0
    for tok, following in zip(tokens[i:], tokens[i + 1 :], strict=False):
        if tok.name in ("ASCII_40", "ASCII_91"):
            depth += 1
        elif tok.name in ("ASCII_41", "ASCII_93"):
            depth -= 1
        elif tok.name == "ASCII_44" and depth == 0:
            starts.append(following.start)
    return starts if len(starts) == count else None


def _lock(st: _State, table: str) -> None:
    """Remember that `table` is locked ACCESS EXCLUSIVE until the current transaction ends."""
    held = st.locked.get(table)
    if st.stmt is not None and not st.is_new(table) and (held is None or held[0] != st.segment):
        st.locked[table] = (st.segment, st.m.up.location(st.stmt.offset)[0])


def _check_dml(st: _State, rv: ast.RangeVar | None, verb: str) -> None:
    held = st.locked.get(_rel_key(rv))
    if held is None or held[0] != st.segment:
        return
    rel = _rel_text(rv)
    st.report(
        "MJ022",
        f"{verb} {rel} runs while the ALTER TABLE on line {held[1]} holds ACCESS EXCLUSIVE on {rel} in the same "
        "transaction: every read and write of the table waits for the whole backfill",
        f"keep the DDL here; backfill {rel} in a later migration with `-- migrate-job: transaction=off`, "
        "in batches (UPDATE ... WHERE id BETWEEN ...)",
    )


def _check_alter_table(st: _State, stmt: ast.AlterTableStmt) -> None:
    table = _rel_key(stmt.relation)
    rel = _rel_text(stmt.relation)
    if stmt.objtype == _OT.OBJECT_TABLE and any(
        isinstance(cmd, ast.AlterTableCmd) and cmd.subtype in _STRONG for cmd in stmt.cmds or ()
    ):
        _lock(st, table)
    cmds = stmt.cmds or ()
    starts = _command_starts(st.stmt.text if st.stmt else "", stmt.relation, len(cmds))
    for index, cmd in enumerate(cmds):
        if not isinstance(cmd, ast.AlterTableCmd):
            continue
        st.at = starts[index] if starts else None
        _check_alter_command(st, table, rel, cmd)
    st.at = None


def _check_alter_command(st: _State, table: str, rel: str, cmd: ast.AlterTableCmd) -> None:
    sub = cmd.subtype
    if sub == _AT.AT_AddColumn and isinstance(cmd.def_, ast.ColumnDef):
        _check_add_column(st, table, rel, cmd.def_)
    elif sub == _AT.AT_AddConstraint and isinstance(cmd.def_, ast.Constraint):
        _check_add_constraint(st, table, rel, cmd.def_)
    elif sub == _AT.AT_AlterColumnType:
        _check_alter_type(st, table, rel, cmd)
    elif sub == _AT.AT_SetNotNull:
        col = cmd.name or "?"
        if not st.is_new(table) and (table, col) not in st.know.valid_not_null:
            st.report(
                "MJ004",
                f"ALTER COLUMN {col} SET NOT NULL on existing table {rel} scans the whole table under ACCESS EXCLUSIVE",
                f"ALTER TABLE {rel} ADD CONSTRAINT {table.rsplit('.', 1)[-1]}_{col}_not_null "
                f"CHECK ({col} IS NOT NULL) NOT VALID; VALIDATE CONSTRAINT in a later migration; "
                f"then SET NOT NULL (PostgreSQL 12+ skips the scan) and drop the CHECK",
            )
    elif sub == _AT.AT_ValidateConstraint:
        name = cmd.name or ""
        checked = st.know.not_null_checks.get((table, name))
        if checked is not None:
            st.know.valid_not_null.add((table, checked))
        if st.not_valid_added.get((table, name)) == st.segment:
            st.report(
                "MJ020",
                f"VALIDATE CONSTRAINT {name} runs in the same transaction as the ADD ... NOT VALID that "
                f"took ACCESS EXCLUSIVE on {rel}: the scan runs with that lock still held",
            )
    elif sub == _AT.AT_DropColumn:
        st.know.column_types.pop((table, cmd.name or ""), None)
        if not st.is_new(table):
            st.report(
                "MJ007",
                f"DROP COLUMN {cmd.name} on {rel}: code that is still running may read or write it",
                f"deploy code that no longer uses {rel}.{cmd.name} first, then drop it in a later "
                f"migration (and disable MJ007 for that file)",
            )
    elif sub is not None and sub in _REWRITES and not st.is_new(table):
        st.report("MJ019", f"{_REWRITES[sub]} on {rel} rewrites it under ACCESS EXCLUSIVE (blocks reads and writes)")


def _check_rename(st: _State, stmt: ast.RenameStmt) -> None:
    kind = stmt.renameType
    table = _rel_key(stmt.relation)
    rel = _rel_text(stmt.relation)
    if kind in (_OT.OBJECT_TABLE, _OT.OBJECT_VIEW, _OT.OBJECT_MATVIEW, _OT.OBJECT_FOREIGN_TABLE):
        if st.is_new(table):
            st.created_tables.add(_table_key(stmt.relation.schemaname if stmt.relation else None, stmt.newname or ""))
            return
        st.report(
            "MJ009",
            f"renaming {rel} to {stmt.newname} breaks the code still running that uses {rel}",
            f"create {stmt.newname} and dual-write (or CREATE VIEW {rel} AS SELECT * FROM {stmt.newname} "
            "after the rename), move the code over, drop the old name later",
        )
    elif kind == _OT.OBJECT_COLUMN:
        st.know.column_types.pop((table, stmt.subname or ""), None)
        if st.is_new(table):
            return
        st.report(
            "MJ009",
            f"renaming column {rel}.{stmt.subname} to {stmt.newname} breaks the code still running that uses it",
            f"ADD COLUMN {stmt.newname}, write both (trigger), backfill in batches, move the code over, "
            f"then drop {stmt.subname}",
        )


def _check_drop(st: _State, stmt: ast.DropStmt) -> None:
    kind = stmt.removeType
    if kind == _OT.OBJECT_TABLE:
        for obj in stmt.objects or ():
            parts = _names(obj)
            key = _table_key(parts[-2] if len(parts) > 1 else None, parts[-1])
            if st.is_new(key):
                st.created_tables.discard(key)
                continue
            st.report(
                "MJ008",
                f"DROP TABLE {'.'.join(parts)}: code that is still running may use it",
                f"deploy code that no longer uses {'.'.join(parts)} first, then drop it in a later migration "
                "(and disable MJ008 for that file)",
            )
    elif kind == _OT.OBJECT_INDEX and not stmt.concurrent:
        for obj in stmt.objects or ():
            parts = _names(obj)
            if parts[-1] in st.created_indexes:
                continue
            st.report(
                "MJ018",
                f"DROP INDEX {'.'.join(parts)} without CONCURRENTLY takes ACCESS EXCLUSIVE on its table "
                "and queues behind running queries",
                f"DROP INDEX CONCURRENTLY {'.'.join(parts)} in a migration of its own",
            )


def _option(options: Iterable[Any] | None, name: str) -> bool:
    for opt in options or ():
        if isinstance(opt, ast.DefElem) and (opt.defname or "").lower() == name:
            arg = getattr(opt.arg, "sval", None)
            if arg is None:
                arg = getattr(opt.arg, "ival", None)
            return str(arg).lower() not in ("false", "off", "0", "no")
    return False


def _check_statement(st: _State, node: ast.Node) -> None:
    if isinstance(node, ast.CreateStmt):
        _check_create_table(st, node)
    elif isinstance(node, ast.CreateTableAsStmt):
        if node.into is not None:
            st.created_tables.add(_rel_key(node.into.rel))
    elif isinstance(node, ast.IndexStmt):
        _check_index(st, node)
    elif isinstance(node, ast.AlterTableStmt):
        _check_alter_table(st, node)
    elif isinstance(node, ast.RenameStmt):
        _check_rename(st, node)
    elif isinstance(node, ast.DropStmt):
        _check_drop(st, node)
    elif isinstance(node, ast.VacuumStmt):
        if node.is_vacuumcmd and _option(node.options, "full"):
            rels = [_rel_text(r.relation) for r in node.rels or () if isinstance(r, ast.VacuumRelation)]
            target = ", ".join(rels) if rels else "every table in the database"
            st.report("MJ010", f"VACUUM FULL rewrites {target} under ACCESS EXCLUSIVE (blocks reads and writes)")
    elif isinstance(node, ast.ClusterStmt):
        target = _rel_text(node.relation) if node.relation else "every previously clustered table"
        st.report("MJ011", f"CLUSTER rewrites {target} under ACCESS EXCLUSIVE (blocks reads and writes)")
    elif isinstance(node, ast.ReindexStmt):
        if not _option(node.params, "concurrently") and not getattr(node, "concurrent", False):
            target = _rel_text(node.relation) if node.relation else (node.name or "")
            kind = node.kind.name.removeprefix("REINDEX_OBJECT_") if node.kind is not None else ""
            if node.relation is None or not st.is_new(_rel_key(node.relation)):
                st.report(
                    "MJ017",
                    f"REINDEX {kind} {target} without CONCURRENTLY blocks writes to the table "
                    "(and reads that use the index)",
                )
    elif isinstance(node, ast.LockStmt):
        mode = int(node.mode or enums.lockdefs.AccessExclusiveLock)
        tables = [r for r in node.relations or () if isinstance(r, ast.RangeVar)]
        if mode >= enums.lockdefs.ShareLock and not all(st.is_new(_rel_key(r)) for r in tables):
            names = ", ".join(_rel_text(r) for r in tables)
            st.report("MJ014", f"LOCK TABLE {names} blocks writes until the migration's transaction ends")
    elif isinstance(node, ast.TruncateStmt):
        tables = [r for r in node.relations or () if isinstance(r, ast.RangeVar)]
        old = [_rel_text(r) for r in tables if not st.is_new(_rel_key(r))]
        if old:
            st.report("MJ015", f"TRUNCATE {', '.join(old)} takes ACCESS EXCLUSIVE and removes every row")
    elif isinstance(node, ast.UpdateStmt):
        _check_dml(st, node.relation, "UPDATE")
    elif isinstance(node, ast.DeleteStmt):
        _check_dml(st, node.relation, "DELETE FROM")
    elif isinstance(node, ast.RefreshMatViewStmt) and not node.concurrent and not st.is_new(_rel_key(node.relation)):
        st.report(
            "MJ021",
            f"REFRESH MATERIALIZED VIEW {_rel_text(node.relation)} without CONCURRENTLY blocks reads of "
            "the view until it finishes",
        )


def _check_transaction_block(st: _State, s: Statement) -> None:
    if not s.non_transactional:
        return
    where = st.block_line
    reason = _transaction_reason(st.m) or (
        f"it is inside the file's own BEGIN (line {where}) … COMMIT" if where is not None else None
    )
    if reason is None:
        return
    what = " ".join(s.text.split()[:4])
    fix = (
        "remove `-- migrate-job: transaction=on` (migrate-job then runs the file outside a transaction)"
        if st.m.directives.transaction is True
        else "remove the BEGIN/COMMIT around it"
        if where is not None
        else "remove the marker's `transaction:true`"
    )
    st.report(
        "MJ012",
        f"{what} … cannot run inside a transaction block, but {reason}: it will fail",
        f"{fix}; keep CONCURRENTLY statements in a migration of their own",
    )


def _check_forced_out(st: _State, statements: tuple[Statement, ...]) -> None:
    """MJ023: a non-transactional statement (found by the runner, not chosen by a directive) among others."""
    m = st.m
    if m.transactional or m.directives.transaction is not None or m.up.transaction is not None:
        return
    first = next((s for s in statements if s.non_transactional), None)
    others = [s for s in statements if not s.non_transactional and s.transaction_control is None]
    if first is None or not others:
        return
    st.stmt, st.at = first, None
    count = sum(1 for s in statements if s.transaction_control is None)
    st.report(
        "MJ023",
        f"{m.up.reason_of(first)} makes this whole file ({count} statements) run outside a transaction: if a later "
        "statement fails, the earlier ones stay committed",
        "split it into its own migration, so the other statements keep running in one transaction",
    )


# ---------------------------------------------------------------------------- API


def _lint(m: Migration, know: _Knowledge) -> list[Finding]:
    st = _State(m=m, know=know)
    try:
        statements = m.up.statements
    except SourceError as exc:
        line = int(exc.fields.get("line", 1))
        column = int(exc.fields.get("column", 1))
        message = exc.message.removeprefix(f"{m.up.path}:{line}:{column}: ")
        return [Finding("MJ000", ERROR, str(m.up.path), line, column, message, RULES["MJ000"].alternative, _version(m))]
    transactional = m.transactional
    for s in statements:
        st.stmt = s
        if s.transaction_control in ("begin", "start"):
            st.block_line = m.up.location(s.offset)[0]
            if not transactional:
                st.segment += 1
            continue
        if s.transaction_control in ("commit", "rollback"):
            st.block_line = None
            continue
        if not transactional and st.block_line is None:
            st.segment += 1  # autocommit: every statement is its own transaction
        _check_transaction_block(st, s)
        raws = pg_parser.parse_sql(s.text)
        for raw in raws:
            if raw.stmt is not None:
                _check_statement(st, raw.stmt)
    _check_forced_out(st, statements)
    disabled = set(m.directives.lint_disable)
    findings = [f for f in st.findings if f.rule not in disabled or f.rule == "MJ000"]
    unknown = sorted(disabled - RULES.keys())
    if unknown:
        line = _directive_line(m)
        findings.insert(
            0,
            Finding(
                "MJ099",
                WARNING,
                str(m.up.path),
                line,
                1,
                f"lint_disable names unknown rule(s): {', '.join(unknown)}",
                RULES["MJ099"].alternative,
                _version(m),
            ),
        )
    return findings


def _version(m: Migration) -> str | None:
    return None if m.version is None else str(m.version)


def _directive_line(m: Migration) -> int:
    for number, text in enumerate(m.up.file_text.splitlines(), 1):
        if "migrate-job:" in text.lower() and "lint" in text.lower():
            return number
    return 1


def lint_migration(m: Migration) -> list[Finding]:
    """Findings for the UP section of one migration, minus the rules its `lint_disable` directive names."""
    return _lint(m, _Knowledge())


def lint_migrations(ms: Iterable[Migration]) -> list[Finding]:
    """Findings for migrations in order; what earlier files establish (validated checks, types) carries over."""
    know = _Knowledge()
    out: list[Finding] = []
    for m in ms:
        out.extend(_lint(m, know))
    return out


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity == ERROR for f in findings)


def format_human(findings: Iterable[Finding]) -> str:
    """`path:line:col: MJ001 error: message` with the safe alternative indented below."""
    return "".join(
        f"{f.file}:{f.line}:{f.column}: {f.rule} {f.severity}: {f.message}\n    hint: {f.hint}\n" for f in findings
    )


def format_json(findings: Iterable[Finding]) -> str:
    items = list(findings)
    counts = {ERROR: 0, WARNING: 0}
    for f in items:
        counts[f.severity] = counts.get(f.severity, 0) + 1
    return json.dumps({"findings": [asdict(f) for f in items], "counts": counts}, indent=2)


def _gh_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(text: str) -> str:
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


def format_github(findings: Iterable[Finding]) -> str:
    """GitHub Actions workflow commands: one `::error`/`::warning` annotation per finding."""
    return "".join(
        f"::{f.severity} file={_gh_property(f.file)},line={f.line},col={f.column},title={_gh_property(f.rule)}"
        f"::{_gh_data(f.message)} ({_gh_data(f.hint)})\n"
        for f in findings
    )


def rules_table() -> str:
    """The rules as a markdown table, for the README."""
    rows = ["| Rule | Severity | What | Safe alternative |", "| --- | --- | --- | --- |"]
    for r in _RULE_LIST:
        rows.append(f"| {r.id} `{r.name}` | {r.severity} | {r.summary} | {r.alternative} |")
    return "\n".join(rows) + "\n"
