"""Structured logs (structlog) and the human outputs: status table, JSON status, plan.

Every log line is one typed event (`migration.applied`, `lock.waiting`, ...) with a run id.
A redacting processor removes known secret strings and URL passwords from every value.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, WrappedLogger

Log = FilteringBoundLogger

_URL_PASSWORD = re.compile(r"(?P<pre>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?P<post>@)", re.IGNORECASE)
_KV_PASSWORD = re.compile(r"(?P<pre>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact_text(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "***")
    # Each pattern only where it can match (a URL has "://", a key=value password says "password"): most
    # values (versions, file names, counts) skip both scans.
    if "://" in text:
        text = _URL_PASSWORD.sub(r"\g<pre>***\g<post>", text)
    if "password" in text.casefold():
        text = _KV_PASSWORD.sub(r"\g<pre>***", text)
    return text


_SECRETS: list[str] = []


def secrets_known() -> list[str]:
    """Every secret registered so far (settings' passwords, AWS secrets, IAM tokens): for redacting reports."""
    return list(_SECRETS)


def add_secret(value: str) -> None:
    """Register a secret learned at run time (AWS secret, IAM token): it is scrubbed from every log line."""
    if value and len(value) >= 4 and value not in _SECRETS:
        _SECRETS.append(value)


class Redactor:
    """structlog processor: scrub secrets from every string in the event (recursively)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        for s in secrets:
            add_secret(s)
        self.secrets = _SECRETS

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return redact_text(value, self.secrets)
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, dict):
            return {k: self._clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(v) for v in value]
        return value

    def __call__(self, logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
        return {k: self._clean(v) for k, v in event.items()}


def configure(*, fmt: str, level: str, run_id: str, secrets: Iterable[str], stream: TextIO | None = None) -> Log:
    """Set up structlog and return the run's logger. fmt: auto | json | console."""
    out = stream or sys.stdout
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer(default=str)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            Redactor(secrets),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    log: Log = structlog.get_logger().bind(run_id=run_id)
    return log


# ---------------------------------------------------------------------------- human output


def _fmt_time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S%z") if value else ""


def _fmt_ms(value: int | None) -> str:
    if value is None:
        return ""
    return f"{value} ms" if value < 10_000 else f"{value / 1000:.1f} s"


def _state(row: Any) -> str:
    """`pending`, or `pending (schema file)` for a migration the schema file will record."""
    via = getattr(row, "via", None)
    return f"{row.state} ({via})" if via else str(row.state)


def status_table(rows: Sequence[Any]) -> str:
    """A plain-text table: version, name, state, applied_at, duration (and source when adopted)."""
    show_source = any(getattr(r, "source", None) not in (None, "migrate-job") for r in rows)
    header = ["VERSION", "NAME", "STATE", "APPLIED AT", "DURATION"] + (["SOURCE"] if show_source else [])
    body = [
        [r.version, r.name, _state(r), _fmt_time(r.applied_at), _fmt_ms(r.execution_ms)]
        + ([r.source or ""] if show_source else [])
        for r in rows
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body, strict=False)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in [header, *body]]
    return "\n".join(lines)


def status_json(rows: Sequence[Any], summary: dict[str, Any]) -> str:
    items = [
        {
            "version": r.version,
            "name": r.name,
            "state": r.state,
            "applied_at": r.applied_at.isoformat() if r.applied_at else None,
            "execution_ms": r.execution_ms,
            "applied_by": r.applied_by,
            "batch": r.batch,
            "file": r.file,
            "source": r.source,
            "error": r.error,
            "via": getattr(r, "via", None),
        }
        for r in rows
    ]
    return json.dumps({"migrations": items, **summary}, indent=2, default=str)


# ---------------------------------------------------------------------------- orchestrators


def termination_message(command: str, code: int, summary: str) -> str:
    """One line for Kubernetes' termination message (`kubectl describe pod` shows it)."""
    return f"migrate-job {command}: exit {code}: {summary}"[:4000]


def write_termination_log(path: Path | None, line: str) -> None:
    """Write the summary where Kubernetes reads it; silently skipped where the path is not writable."""
    if path is None or not path.parent.is_dir():
        return
    if path == Path("/dev/termination-log") and not path.exists():
        return  # not in a Kubernetes pod (the kubelet creates it); never create files in /dev
    try:
        with path.open("w", encoding="utf-8") as fh:
            fh.write(line + "\n")
    except OSError:
        pass


def _md(text: object) -> str:
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def _outcome_table(outcomes: Sequence[Any]) -> list[str]:
    return ["| version | name | file | duration |", "|---|---|---|---|"] + [
        f"| {_md(o.migration.key)} | {_md(o.migration.name)} | {_md(o.migration.filename)} | {o.elapsed_ms} ms |"
        for o in outcomes
    ]


def github_summary(
    command: str, code: int, applied: Sequence[Any], error: str | None, *, rolled_back: Sequence[Any] = ()
) -> str:
    """A Markdown step summary: outcome and tables of the migrations rolled back and applied in this run."""
    icon = "✅" if code == 0 else "❌"
    lines = [f"### {icon} migrate-job {command}: exit {code}", ""]
    if error:
        lines += [f"**Error:** {_md(error)}", ""]
    if rolled_back:
        lines += ["Rolled back:", "", *_outcome_table(rolled_back), ""]
    if applied:
        lines += (["Applied:", ""] if rolled_back else []) + _outcome_table(applied)
    elif not rolled_back:
        lines.append("No migrations were applied.")
    return "\n".join(lines).rstrip("\n") + "\n"


def _escape_property(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A").replace(":", "%3A").replace(",", "%2C")


def _escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def github_annotation(
    message: str, file: str | None = None, line: int | None = None, col: int | None = None, *, level: str = "error"
) -> str:
    """A GitHub Actions workflow command: `::error file=…,line=…::message` (`level`: error, warning, notice)."""
    props = []
    if file:
        props.append(f"file={_escape_property(file)}")
    if line:
        props.append(f"line={line}")
    if col:
        props.append(f"col={col}")
    head = f"::{level} " + ",".join(props) if props else f"::{level}"
    return f"{head}::{_escape_data(message)}"


def github_problems_summary(command: str, code: int, problems: Sequence[str], warnings: Sequence[str]) -> str:
    """A Markdown step summary of a check that changes nothing (`validate --offline`): its problems and warnings."""
    icon = "✅" if code == 0 else "❌"
    lines = [f"### {icon} migrate-job {command}: exit {code}", ""]
    if problems:
        lines += [f"{len(problems)} problem(s):", "", *(f"- {_md(p)}" for p in problems), ""]
    if warnings:
        lines += [f"{len(warnings)} warning(s):", "", *(f"- {_md(w)}" for w in warnings), ""]
    if not problems and not warnings:
        lines.append("No problems.")
    return "\n".join(lines).rstrip("\n") + "\n"


def append_file(path: Path, text: str) -> None:
    try:
        with path.open("a", encoding="utf-8") as fh:
            fh.write(text)
    except OSError:
        pass


# ---------------------------------------------------------------------------- audit trail


def _short(value: Any) -> str:
    text = str(value)
    return text[:12] + "…" if len(text) > 13 else text


def audit_summary(event: str, detail: dict[str, Any]) -> str:
    """One line saying what an audit event changed."""
    if event == "adopted":
        text = f"from {detail.get('table')} ({detail.get('tool')}): {detail.get('count', 0)} row(s)"
        if detail.get("modified"):
            text += f"; edited since: {', '.join(map(str, detail['modified']))}"
        if detail.get("unmatched"):
            text += f"; no file: {len(detail['unmatched'])}"
        return text
    if event == "checksum_accepted":
        return f"checksum {_short(detail.get('old_checksum'))} -> {_short(detail.get('checksum'))}"
    if event in ("rolled_back", "forgotten"):
        when = detail.get("applied_at")
        by = detail.get("applied_by")
        text = f"was applied {str(when)[:19] if when else ''} by {by or '?'}".replace("  ", " ")
        return text + (f" ({detail['reason']})" if detail.get("reason") else "")
    if event in ("baselined", "schema_loaded"):
        versions = detail.get("versions") or []
        return (f"{detail['file']}: " if detail.get("file") else "") + f"{len(versions)} version(s)"
    if event == "repaired":
        return f"mode {detail.get('mode')}"
    if event == "failed":
        return str(detail.get("error") or "")
    keys = ("kind", "batch", "execution_ms")
    return " ".join(f"{k}={detail[k]}" for k in keys if detail.get(k) is not None)


def audit_table(events: Sequence[Any]) -> str:
    """The audit trail as a plain-text table: when, what, which version, by whom, what changed."""
    if not events:
        return "(no events recorded yet)"
    header = ["AT", "EVENT", "VERSION", "BY", "DETAIL"]
    body = [
        [_fmt_time(e.at), e.event, e.version or "", e.applied_by or "", audit_summary(e.event, e.detail or {})]
        for e in events
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body, strict=False)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in [header, *body]]
    return "\n".join(lines)


def audit_json(events: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {
            "id": e.id,
            "at": e.at.isoformat() if e.at else None,
            "event": e.event,
            "version": e.version,
            "name": e.name,
            "applied_by": e.applied_by,
            "run_id": e.run_id,
            "detail": e.detail,
        }
        for e in events
    ]
