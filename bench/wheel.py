"""migrate-job as a user installs it: a wheel of this checkout, installed into a venv of its own.

The benchmark runs that venv's `migrate-job` entry point (bytecode compiled by pip at install time, no
checkout on sys.path), beside the editable `python -m job` of the checkout. The venv (default
.dev/bench-venv, git-ignored) gets the very dependency versions of the running environment, pinned and
installed with `--no-deps` on the first run (again only when the pins change); the wheel itself is rebuilt
and reinstalled on every run, from a copy of the sources (so no build/ or *.egg-info lands in the checkout).
"""

from __future__ import annotations

import importlib.metadata as md
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

SOURCES = ("pyproject.toml", "README.md", "job")
STAMP = ".bench-pins"
PIP_TIMEOUT = 600


class WheelUnavailable(RuntimeError):
    """The wheel could not be built or installed (the message says why)."""


# ---------------------------------------------------------------------------- pure-ish: pins


def wheel_requirements(wheel: Path) -> list[str]:
    """The Requires-Dist lines of a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(name).decode("utf-8")
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Requires-Dist:")]


def applies(req: Requirement, extras: Iterable[str]) -> bool:
    """Whether `req` is needed when its parent is installed with `extras` (none: the plain install)."""
    if req.marker is None:
        return True
    return any(req.marker.evaluate({"extra": extra}) for extra in ("", *extras))


def pins(
    requirements: Iterable[str], version_of: Callable[[str], str], requires_of: Callable[[str], list[str]]
) -> list[str]:
    """`name==version` for the closure of `requirements` (the root without extras), as `version_of` says."""
    todo = [req for req in map(Requirement, requirements) if applies(req, ())]
    versions: dict[str, str] = {}
    extras: dict[str, set[str]] = {}
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in versions and set(req.extras) <= extras[name]:
            continue
        extras.setdefault(name, set()).update(req.extras)
        versions[name] = version_of(name)
        todo.extend(child for child in map(Requirement, requires_of(name)) if applies(child, extras[name]))
    return sorted(f"{name}=={version}" for name, version in versions.items())


def _version_of(name: str) -> str:
    return md.version(name)


def _requires_of(name: str) -> list[str]:
    return list(md.requires(name) or [])


# ---------------------------------------------------------------------------- build and install


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    try:
        p = subprocess.run(
            cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT, stdin=subprocess.DEVNULL, cwd=cwd, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise WheelUnavailable(f"{what} timed out; run with --no-wheel") from exc
    if p.returncode != 0:
        tail = " ".join((p.stderr or p.stdout).strip().splitlines()[-3:])
        raise WheelUnavailable(f"{what} exited {p.returncode}: {tail}; run with --no-wheel")


def build(root: Path, out: Path) -> Path:
    """`pip wheel --no-deps` of a copy of the checkout's sources; the wheel's path."""
    with tempfile.TemporaryDirectory(prefix="migrate-job-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in SOURCES:
            path = root / name
            if path.is_dir():
                shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(path, src / name)
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("*.whl"):
            old.unlink()
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check"]
        _run([*cmd, "-w", str(out), str(src)], "pip wheel")
    wheels = sorted(out.glob("*.whl"))
    if not wheels:
        raise WheelUnavailable(f"pip wheel wrote no wheel into {out}; run with --no-wheel")
    return wheels[-1]


def install(root: Path, venv: Path, log: Callable[[str], None]) -> tuple[Path, list[str]]:
    """Build the wheel, (re)install it into `venv` with the pinned dependencies: (entry point, pins)."""
    log("building a wheel of the checkout (pip wheel --no-deps)")
    wheel = build(root, venv.parent / "bench-wheel")
    wanted = pins(wheel_requirements(wheel), _version_of, _requires_of)
    python = venv / "bin" / "python"
    stamp = venv / STAMP
    key = "\n".join([sys.version, *wanted])
    if not (python.exists() and stamp.exists() and stamp.read_text(encoding="utf-8") == key):
        log(f"creating {venv} with {len(wanted)} pinned dependencies (pip install --no-deps)")
        shutil.rmtree(venv, ignore_errors=True)
        _run([sys.executable, "-m", "venv", str(venv)], "python -m venv")
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
        _run([*pip, *wanted], "pip install of the dependencies")
        stamp.write_text(key, encoding="utf-8")
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
    _run([*pip, "--force-reinstall", str(wheel)], "pip install of the wheel")
    entry = venv / "bin" / "migrate-job"
    if not entry.exists():
        raise WheelUnavailable(f"{entry} is missing after the install; run with --no-wheel")
    return entry, wanted
