"""A fresh real database per test: SQLite in a temp dir, and PostgreSQL when the test
command started one (SAURON_TEST_DATABASE_URL, see scripts/test)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sauron.store.db import Store


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    s.migrate()
    try:
        yield s
    finally:
        s.close()
