"""The benchmark's non-editable install (bench/wheel.py): the dependency pins, computed without a network."""

from __future__ import annotations

import zipfile
from pathlib import Path

from packaging.requirements import Requirement

from bench.wheel import applies, pins, wheel_requirements

VERSIONS = {
    "psycopg": "3.3.9",
    "psycopg-binary": "3.3.9",
    "pydantic": "2.14.4",
    "typing-extensions": "4.16.0",
    "tzdata": "1",
}
REQUIRES = {
    "psycopg": [
        'psycopg-binary==3.3.9; implementation_name != "pypy" and extra == "binary"',
        "typing-extensions>=4.6",
        'pytest; extra == "test"',
    ],
    "psycopg-binary": [],
    "pydantic": ["typing-extensions>=4.14"],
    "typing-extensions": [],
    "tzdata": [],
}


def test_pins_follow_extras_and_skip_unused_ones() -> None:
    """The closure pins every installed dependency, follows requested extras (psycopg[binary]) and no others."""
    got = pins(
        ["psycopg[binary]>=3.2,<4", "pydantic>=2.6", 'boto3>=1.34; extra == "aws"'],
        VERSIONS.__getitem__,
        REQUIRES.__getitem__,
    )
    assert got == ["psycopg-binary==3.3.9", "psycopg==3.3.9", "pydantic==2.14.4", "typing-extensions==4.16.0"]


def test_pins_canonical_names() -> None:
    """Names are canonicalised, so `Typing_Extensions` and `typing-extensions` are one pin."""
    got = pins(["Typing_Extensions", "typing-extensions>=4"], VERSIONS.__getitem__, REQUIRES.__getitem__)
    assert got == ["typing-extensions==4.16.0"]


def test_applies_markers() -> None:
    """A requirement behind an extra applies only when that extra is asked for; a plain one always."""
    assert applies(Requirement("a"), ())
    assert not applies(Requirement('a; extra == "binary"'), ())
    assert applies(Requirement('a; extra == "binary"'), ("binary",))
    assert not applies(Requirement('a; python_version < "3"'), ())


def test_wheel_requirements(tmp_path: Path) -> None:
    """The root requirements are read from the built wheel's METADATA (Requires-Dist)."""
    wheel = tmp_path / "x-1-py3-none-any.whl"
    metadata = (
        "Metadata-Version: 2.4\nName: x\n"
        'Requires-Dist: psycopg[binary]<4,>=3.2\nRequires-Dist: boto3; extra == "aws"\n\nbody\n'
    )
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("x/__init__.py", "")
        zf.writestr("x-1.dist-info/METADATA", metadata)
    assert wheel_requirements(wheel) == ["psycopg[binary]<4,>=3.2", 'boto3; extra == "aws"']
