"""Registers the `deploy` marker (offline validation of deploy/; tests/conftest.py is shared, so not there)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "deploy: validates deploy/ offline (needs pip install -r deploy/requirements-validate.txt)"
    )
