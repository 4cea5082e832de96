"""The production guard: changing a production database needs an explicit confirmation.

`MIGRATE_ENV=production` (any other name is not special) → `migrate` with something pending, and every
destructive command (rollback, reset, refresh, baseline, repair), refuse unless confirmed: interactively on
a TTY by typing the database name, otherwise by `--yes` or `MIGRATE_CONFIRM_PRODUCTION=yes`
(`MIGRATE_CONFIRM=yes` works too). Refused → ProductionRefused, exit 7, nothing touched.
"""

from __future__ import annotations

from collections.abc import Callable

from job.config import Settings
from job.errors import ProductionRefused


def is_production(settings: Settings) -> bool:
    return settings.env.strip().lower() in ("production", "prod")


def confirm(
    settings: Settings,
    action: str,
    *,
    database: str,
    interactive: bool,
    ask: Callable[[str], str] = input,
) -> None:
    """Return if the action may proceed; raise ProductionRefused otherwise."""
    if not is_production(settings) or settings.confirm_production:
        return
    if interactive:
        try:
            answer = ask(f"{action} on PRODUCTION database {database!r}. Type the database name to continue: ")
        except EOFError:
            answer = ""
        if answer.strip() == database:
            return
        raise ProductionRefused(f"production guard: {action} not confirmed (the answer did not match {database!r})")
    raise ProductionRefused(
        f"production guard: refusing to {action} on MIGRATE_ENV={settings.env} without confirmation; "
        "pass --yes or set MIGRATE_CONFIRM_PRODUCTION=yes",
        env=settings.env,
    )
