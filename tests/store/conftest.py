"""A fresh real database per test: SQLite in a temp dir, and PostgreSQL when the test
command started one (SAURON_TEST_DATABASE_URL, see scripts/test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sauron.store.db import Store


@pytest.fixture
def store(db_url: str, tmp_path: Path) -> Iterator[Store]:
    s = Store(db_url, tmp_path / "media")
    s.migrate()
    try:
        yield s
    finally:
        s.close()
