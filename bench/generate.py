"""Generate N synthetic, deterministic migration files for the benchmark.

The mix is what a real project accumulates: CREATE TABLE, CREATE INDEX (not CONCURRENTLY, so every
migration is transactional), ALTER TABLE … ADD COLUMN, INSERTs whose string literals contain `;`,
and PL/pgSQL functions whose `$$` bodies contain `;`. The same (n, seed) always gives the same
bytes, and the first k migrations of a set of n have the same contents in any larger set (the
number width grows with n: 4 digits up to 9999).

    python bench/generate.py DIR [--count 200] [--seed 1] [--down]

Without --down the files have no `-- DOWN` section, so `psql -f` can run them unchanged (the psql
baseline of bench/run.py). With --down each file has `-- UP` / `-- DOWN` sections (for the
planning benchmark, which parses sections but runs nothing).
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("table", "index", "column", "insert", "function")
WEIGHTS = (2, 2, 2, 2, 2)
WORDS = ("alpha", "beta", "gamma", "delta", "omega", "users", "orders", "items", "events", "audit")


@dataclass
class _State:
    """What earlier migrations created, so later ones only reference existing objects."""

    tables: list[str] = field(default_factory=list)
    columns: dict[str, list[str]] = field(default_factory=dict)


def _table(i: int, rng: random.Random, st: _State) -> tuple[str, str]:
    name = f"{rng.choice(WORDS)}_{i}"
    st.tables.append(name)
    st.columns[name] = ["name", "created_at"]
    up = (
        f"CREATE TABLE {name} (\n"
        "    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
        "    name       text NOT NULL,\n"
        "    payload    jsonb NOT NULL DEFAULT '{}',\n"
        "    created_at timestamptz NOT NULL DEFAULT now()\n"
        ");\n"
        f"COMMENT ON TABLE {name} IS 'created by migration {i}; generated';\n"
    )
    return up, f"DROP TABLE {name};\n"


def _index(i: int, rng: random.Random, st: _State) -> tuple[str, str]:
    table = rng.choice(st.tables)
    column = rng.choice(st.columns[table])
    name = f"ix_{table}_{column}_{i}"
    method = rng.choice(("", "", " USING btree"))
    return f"CREATE INDEX {name} ON {table}{method} ({column});\n", f"DROP INDEX {name};\n"


def _column(i: int, rng: random.Random, st: _State) -> tuple[str, str]:
    table = rng.choice(st.tables)
    column = f"c_{i}"
    typ, default = rng.choice((("integer", "0"), ("text", "'n/a; none'"), ("boolean", "false"), ("numeric(12,2)", "0")))
    st.columns[table].append(column)
    up = (
        f"ALTER TABLE {table} ADD COLUMN {column} {typ} NOT NULL DEFAULT {default};\n"
        f"COMMENT ON COLUMN {table}.{column} IS 'added in {i}; see ticket #{rng.randint(100, 9999)}';\n"
    )
    return up, f"ALTER TABLE {table} DROP COLUMN {column};\n"


def _insert(i: int, rng: random.Random, st: _State) -> tuple[str, str]:
    table = rng.choice(st.tables)
    rows = []
    for r in range(rng.randint(3, 8)):
        word = rng.choice(WORDS)
        rows.append(
            f'    (\'{word}; row {r} of {i}\', \'{{"note": "a;b;c", "n": {rng.randint(0, 1000)}}}\')'  # `;` in literals
        )
    up = (
        f"-- seed data for {table}; the semicolons below are inside string literals\n"
        f"INSERT INTO {table} (name, payload) VALUES\n" + ",\n".join(rows) + ";\n"
        f"UPDATE {table} SET payload = payload || '{{\"touched\": \"yes;\"}}' WHERE name LIKE '%; row 0 of {i}';\n"
    )
    return up, f"DELETE FROM {table} WHERE name LIKE '%of {i}';\n"


def _function(i: int, rng: random.Random, st: _State) -> tuple[str, str]:
    table = rng.choice(st.tables)
    name = f"fn_{table}_count_{i}"
    up = (
        f"CREATE OR REPLACE FUNCTION {name}(prefix text) RETURNS bigint\n"
        "LANGUAGE plpgsql STABLE AS $$\n"
        "DECLARE\n"
        "    total bigint := 0;\n"
        "    r record;\n"
        "BEGIN\n"
        f"    FOR r IN SELECT name FROM {table} WHERE name LIKE prefix || '%' LOOP\n"
        "        total := total + 1;  -- ';' inside the body\n"
        "    END LOOP;\n"
        "    IF total = 0 THEN\n"
        "        RAISE DEBUG 'nothing; for %', prefix;\n"
        "    END IF;\n"
        "    RETURN total;\n"
        "END;\n"
        "$$;\n"
    )
    return up, f"DROP FUNCTION {name}(text);\n"


_MAKERS = {"table": _table, "index": _index, "column": _column, "insert": _insert, "function": _function}


@dataclass(frozen=True)
class Generated:
    """One generated migration: its number, title (`kind_i`), header comment line, up SQL and down SQL."""

    number: int
    title: str
    header: str
    up: str
    down: str


def migration_parts(count: int, *, seed: int = 1) -> list[Generated]:
    """The parts of `count` migrations, deterministic for (count, seed): each tool's file format is built from them."""
    rng = random.Random(seed)
    st = _State()
    out: list[Generated] = []
    for i in range(1, count + 1):
        kind = "table" if len(st.tables) < 3 else rng.choices(KINDS, WEIGHTS)[0]
        up, undo = _MAKERS[kind](i, rng, st)
        title = f"{kind}_{i}"
        out.append(Generated(i, title, f"-- {title}: generated by bench/generate.py (seed {seed})\n", up, undo))
    return out


def migration_texts(count: int, *, seed: int = 1, down: bool = False) -> list[tuple[str, str]]:
    """(file name, file text) of `count` migrations, deterministic for (count, seed, down)."""
    width = max(4, len(str(count)))
    out: list[tuple[str, str]] = []
    for m in migration_parts(count, seed=seed):
        text = f"{m.header}\n-- UP\n{m.up}\n-- DOWN\n{m.down}" if down else f"{m.header}\n{m.up}"
        out.append((f"{m.number:0{width}d}_{m.title}.sql", text))
    return out


def generate(directory: Path, count: int, *, seed: int = 1, down: bool = False) -> list[Path]:
    """Write the migrations into `directory` (created; must not contain other .sql files)."""
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.glob("*.sql")):
        raise FileExistsError(f"{directory} already contains .sql files")
    paths = []
    for name, text in migration_texts(count, seed=seed, down=down):
        path = directory / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def generate_large(directory: Path, megabytes: float, *, seed: int = 1) -> Path:
    """One transactional migration of about `megabytes` MB (CREATE TABLE + one multi-row INSERT)."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    target = int(megabytes * 1_000_000)
    parts = [
        "-- one large data migration: generated by bench/generate.py\n",
        "CREATE TABLE large_seed (id int, t text);\n",
    ]
    parts.append("INSERT INTO large_seed (id, t) VALUES\n")
    size = sum(len(p) for p in parts)
    i = 0
    while size < target:
        i += 1
        row = f"({i}, '{rng.choice(WORDS)}; {'x' * 180}; {i}'),\n"
        parts.append(row)
        size += len(row)
    parts.append(f"({i + 1}, 'last; row');\n")
    path = directory / "0001_large_seed.sql"
    path.write_text("".join(parts), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate synthetic migrations for the benchmark.")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--down", action="store_true", help="add -- UP / -- DOWN sections")
    args = parser.parse_args(argv)
    paths = generate(args.directory, args.count, seed=args.seed, down=args.down)
    print(f"{len(paths)} migrations in {args.directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
