"""Every supported folder layout, end to end: apply, rerun, roll back, re-apply, compare schemas.

The example folders live in tests/fixtures/layouts/<layout>/; between them they contain the awkward
cases real migration folders have (no final semicolon, comment-only files, own BEGIN/COMMIT,
dollar-quoted bodies, DO blocks, ALTER TYPE … ADD VALUE, CONCURRENTLY mixed with other statements).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from tests.pg import cli
from tests.pg.cli import (
    FIXTURES,
    applied_versions,
    history,
    query,
    schema_dump,
    sha256,
    user_relations,
)
from tests.pg.cli import migrate_unattended as migrate
from tests.pg.cli import run_unattended as run

pytestmark = pytest.mark.pg

# ---------------------------------------------------------------------------- expectations

LAYOUTS = ("numbered", "markers", "rollback_files", "golang", "flyway")
WITH_DOWNS = ("markers", "rollback_files", "golang", "flyway")

# Versions in the order they must be applied.
ORDER: dict[str, list[str]] = {
    "numbered": ["1", "2", "3", "4", "5", "6", "7"],
    "markers": ["1", "2", "3", "4", "5", "6", "7"],
    "rollback_files": ["1", "2", "20240101120000", "20240215093000", "20240301080000"],
    "golang": [str(n) for n in range(1, 11)],
    "flyway": ["1", "1.1", "1.9", "1.10", "2", "2.1", "R__product_catalog"],
}

# Versions whose file cannot run in a transaction (CONCURRENTLY): applied statement by statement.
NON_TRANSACTIONAL: dict[str, set[str]] = {
    "numbered": set(),
    "markers": {"6", "7"},
    "rollback_files": {"20240301080000"},
    "golang": set(),
    "flyway": {"2.1"},
}

# The file each layout's down SQL comes from, given the up file's version entry in the log.
DOWN_FILE_SUFFIX: dict[str, str] = {
    "markers": ".sql",  # the DOWN section of the same file
    "rollback_files": "_rollback.sql",
    "golang": ".down.sql",
    "flyway": ".sql",  # U<version>__name.sql
}

# What the migrations must have built, exercised inside a transaction that is rolled back:
# (statement, expected first value of its first row; None = just run it).
EFFECTS: dict[str, list[tuple[str, object]]] = {
    "numbered": [
        ("SELECT enum_range(NULL::order_status)::text", "{pending,paid,shipped,cancelled}"),
        (
            "WITH c AS (INSERT INTO customers (email, full_name) VALUES ('ada@example.com', 'Ada') RETURNING id),"
            " o AS (INSERT INTO orders (customer_id, status, total_cents) SELECT id, 'paid', 1250 FROM c"
            " RETURNING id) INSERT INTO shipments (order_id, carrier) SELECT id, 'DHL' FROM o",
            None,
        ),
        ("SELECT status::text FROM orders", "shipped"),
        ("SELECT customer_lifetime_cents(customer_id) FROM orders", 1250),
    ],
    "markers": [
        ("SELECT enum_range(NULL::post_status)::text", "{draft,published,archived}"),
        (
            "WITH u AS (INSERT INTO users (handle) VALUES ('ada') RETURNING id)"
            " INSERT INTO posts (author_id, title, body, status) SELECT id, 'Hello', 'first post', 'archived' FROM u",
            None,
        ),
        ("SELECT search @@ to_tsquery('simple', 'hello & first') FROM posts", True),
        (
            "SELECT count(*) FROM pg_index WHERE indisvalid AND indexrelid IN"
            " ('posts_search_idx'::regclass, 'posts_author_published_idx'::regclass)",
            2,
        ),
        ("SELECT obj_description('posts_author_published_idx'::regclass, 'pg_class')", "author feed, newest first"),
    ],
    "rollback_files": [
        ("INSERT INTO tenants (name, slug) VALUES ('Acme Corp', 'acme-corp')", None),
        ("INSERT INTO invoices (tenant_id, amount, issued_on) SELECT id, 99.50, '2024-03-01' FROM tenants", None),
        ("SELECT number FROM invoices", "2024-1000"),
        ("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'tenants'::regclass AND attname = 'slug'", True),
        ("SELECT indisvalid FROM pg_index WHERE indexrelid = 'invoices_tenant_issued_idx'::regclass", True),
    ],
    "golang": [
        ("SELECT enum_range(NULL::membership_role)::text", "{member,admin,owner}"),
        (
            "WITH u AS (INSERT INTO users (email) VALUES ('owner@example.com') RETURNING id),"
            " t AS (INSERT INTO teams (name, owner_id) SELECT 'Core', id FROM u RETURNING id, owner_id)"
            " INSERT INTO memberships (team_id, user_id, role) SELECT id, owner_id, 'owner' FROM t",
            None,
        ),
        ("SELECT team_name || ' ' || email FROM team_owners", "Core owner@example.com"),
        ("SELECT count(*) FROM pg_trigger WHERE tgname IN ('users_touch', 'teams_touch')", 2),
    ],
    "flyway": [
        ("INSERT INTO categories (name) VALUES ('Tools')", None),
        (
            "INSERT INTO products (name, price_cents, category_id, sku)"
            " SELECT 'Hammer', 1999, id, 'H-1' FROM categories",
            None,
        ),
        ("SELECT name || '/' || category FROM product_catalog", "Hammer/Tools"),
        ("SELECT count(*) FROM price_history", 1),
        ("SELECT discounted_price(1999, 10)", 1799),
        ("SELECT indisvalid AND indisunique FROM pg_index WHERE indexrelid = 'products_sku_key'::regclass", True),
    ],
}


def check_effects(db_url: str, layout: str) -> None:
    with psycopg.connect(db_url) as conn:
        try:
            for statement, expected in EFFECTS[layout]:
                cur = conn.execute(statement.encode())
                if expected is not None:
                    row = cur.fetchone()
                    assert row is not None and row[0] == expected, (layout, statement, row)
        finally:
            conn.rollback()


# ---------------------------------------------------------------------------- tests


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layout_applies_reruns_rolls_back_and_reapplies_to_the_same_schema(db_url: str, layout: str) -> None:
    """Each layout applies in version order, reruns as a no-op, resets via its downs and re-applies identically."""
    folder = FIXTURES / layout
    empty = schema_dump(db_url)

    first = migrate(db_url, folder)

    assert first.returncode == 0, first.describe()
    assert applied_versions(first) == ORDER[layout]
    rows = history(db_url)
    assert sorted(r["version"] for r in rows) == sorted(ORDER[layout])
    assert {r["status"] for r in rows} == {"applied"}
    assert {r["source"] for r in rows} == {"migrate-job"}
    assert {r["batch"] for r in rows} == {1}
    assert {r["version"] for r in rows if r["kind"] == "non_transactional"} == NON_TRANSACTIONAL[layout]
    check_effects(db_url, layout)
    schema = schema_dump(db_url)

    rerun = migrate(db_url, folder)

    assert rerun.returncode == 0, rerun.describe()
    assert applied_versions(rerun) == []
    assert history(db_url) == rows, "a rerun must not add or touch history rows"

    if layout not in WITH_DOWNS:
        return

    reset = run(db_url, "reset", "--dir", str(folder))

    assert reset.returncode == 0, reset.describe()
    versioned = [v for v in ORDER[layout] if not v.startswith("R__")]
    assert [str(e["version"]) for e in reset.events("migration.rolled_back")] == versioned[::-1]
    down_files = [str(e["file"]) for e in reset.events("migration.rolled_back")]
    assert all(f.endswith(DOWN_FILE_SUFFIX[layout]) for f in down_files), down_files
    if layout == "flyway":
        assert all(f.startswith("U") for f in down_files), down_files
    if layout == "markers":
        assert down_files == sorted((p.name for p in folder.glob("*.sql")), reverse=True)
    assert user_relations(db_url) == cli.OWN_RELATIONS
    assert schema_dump(db_url) == empty, "reset must remove every object the migrations created"
    left = [r["version"] for r in history(db_url)]
    assert left == [], f"reset left {left} recorded as applied although their objects are gone"

    again = migrate(db_url, folder)

    assert again.returncode == 0, again.describe()
    assert applied_versions(again) == ORDER[layout]
    check_effects(db_url, layout)
    assert schema_dump(db_url) == schema


def test_flyway_repeatable_runs_last_and_again_only_when_its_checksum_changes(db_url: str, tmp_path: Path) -> None:
    """A Flyway R__ file runs after all versioned files, is skipped while unchanged and re-applied when edited."""
    folder = tmp_path / "flyway"
    shutil.copytree(FIXTURES / "flyway", folder)
    repeatable = folder / "R__product_catalog.sql"

    first = migrate(db_url, folder)
    assert first.returncode == 0, first.describe()
    assert applied_versions(first)[-1] == "R__product_catalog"
    before = {r["version"]: r for r in history(db_url)}
    assert before["R__product_catalog"]["checksum"] == sha256(repeatable)

    unchanged = migrate(db_url, folder)
    assert unchanged.returncode == 0, unchanged.describe()
    assert applied_versions(unchanged) == []
    assert {r["version"]: r for r in history(db_url)} == before

    repeatable.write_text(repeatable.read_text().replace("p.price_cents", "p.price_cents, p.sku"))
    (folder / "V3__product_stock.sql").write_text("ALTER TABLE products ADD COLUMN stock integer NOT NULL DEFAULT 0;\n")

    changed = migrate(db_url, folder)

    assert changed.returncode == 0, changed.describe()
    assert applied_versions(changed) == ["3", "R__product_catalog"]
    after = {r["version"]: r for r in history(db_url)}
    assert after["R__product_catalog"]["checksum"] == sha256(repeatable)
    assert {k: v for k, v in after.items() if k not in ("3", "R__product_catalog")} == {
        k: v for k, v in before.items() if k != "R__product_catalog"
    }
    columns = query(
        db_url,
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_name = 'product_catalog' ORDER BY ordinal_position",
    )
    assert [c[0] for c in columns] == ["id", "name", "category", "price_cents", "sku"]

    settled = migrate(db_url, folder)
    assert settled.returncode == 0, settled.describe()
    assert applied_versions(settled) == []


def test_mixed_layout_folder_is_refused_naming_the_layouts(db_url: str, tmp_path: Path) -> None:
    """A folder mixing golang-migrate and Flyway files stops with exit 4 naming both layouts; nothing is created."""
    folder = tmp_path / "migrations"
    folder.mkdir()
    for name in ("1_create_users.up.sql", "1_create_users.down.sql", "2_create_teams.up.sql"):
        shutil.copy(FIXTURES / "golang" / name, folder / name)
    shutil.copy(FIXTURES / "flyway" / "V2__discount_function.sql", folder / "V2__discount_function.sql")

    result = migrate(db_url, folder)

    assert result.returncode == 4, result.describe()
    assert "mixed migration layouts" in result.output
    assert "golang" in result.output and "flyway" in result.output
    assert history(db_url) == []
    assert user_relations(db_url) == set()


@pytest.mark.parametrize(
    ("layout", "forced"),
    [("golang", "flyway"), ("flyway", "numbered"), ("markers", "golang"), ("rollback_files", "flyway")],
)
def test_forced_layout_that_does_not_match_the_folder_is_refused(db_url: str, layout: str, forced: str) -> None:
    """MIGRATE_FORMAT naming a layout the folder does not use stops with exit 4 before touching the database."""
    result = migrate(db_url, FIXTURES / layout, MIGRATE_FORMAT=forced)

    assert result.returncode == 4, result.describe()
    assert f"MIGRATE_FORMAT={forced}" in result.output
    assert user_relations(db_url) == set()


def test_forced_layout_that_matches_the_folder_applies(db_url: str) -> None:
    """MIGRATE_FORMAT naming the folder's own layout applies it as auto-detection would."""
    result = migrate(db_url, FIXTURES / "golang", MIGRATE_FORMAT="golang")

    assert result.returncode == 0, result.describe()
    assert applied_versions(result) == ORDER["golang"]
