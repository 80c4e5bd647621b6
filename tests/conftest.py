"""Fixtures shared by every suite: real services, started on demand and stopped afterwards."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support import postgres


def skip_or_fail(reason: str) -> None:
    """Skips a test whose real component is missing here; in CI a missing component fails it,
    so that coverage never silently shrinks."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must provide it)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres.PostgresServer]:
    reason = postgres.unavailable_reason()
    if reason is not None:
        skip_or_fail(reason)
    with postgres.running_server() as server:
        yield server
