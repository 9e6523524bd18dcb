"""The versioned migrations build exactly the schema the models describe."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from sauron.store import StoreError
from sauron.store.db import Store
from sauron.store.migrations import MIGRATIONS, current_version, migrate
from sauron.store.models import Base


def test_fresh_database_migrates_to_latest_and_again_is_a_no_op(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    try:
        assert current_version(engine) == 0
        assert migrate(engine) == MIGRATIONS[-1].version
        assert migrate(engine) == MIGRATIONS[-1].version
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT version FROM schema_version")).all()
        assert [r[0] for r in rows] == [m.version for m in MIGRATIONS]
    finally:
        engine.dispose()


def test_migrated_schema_matches_the_models(store: Store) -> None:
    insp = sa.inspect(store.engine)
    tables = set(insp.get_table_names())
    assert set(Base.metadata.tables) <= tables
    for name, table in Base.metadata.tables.items():
        have = {c["name"]: c for c in insp.get_columns(name)}
        assert set(have) == {c.name for c in table.columns}, name
        for col in table.columns:
            assert have[col.name]["nullable"] == col.nullable, f"{name}.{col.name}"
        indexes = {i["name"] for i in insp.get_indexes(name)}
        assert {i.name for i in table.indexes} <= indexes, name
    uniques = {u["name"] for u in insp.get_unique_constraints("sightings")}
    assert "uq_sightings_camera_ts_face" in uniques or "uq_sightings_camera_ts_face" in {
        i["name"] for i in insp.get_indexes("sightings")
    }


def test_a_database_newer_than_the_code_is_refused(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO schema_version (version, description, applied_at) "
                "VALUES (999, 'from the future', 0)"
            )
        )
    with pytest.raises(StoreError, match="newer than this build"):
        store.migrate()


def test_instance_id_names_the_database(store: Store, tmp_path: object) -> None:
    first = store.instance_id()
    assert len(first) == 32
    assert store.instance_id() == first


def test_people_of_a_version_1_database_keep_their_name_after_the_upgrade(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    try:
        assert migrate(engine, target=1) == 1
        with engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO persons (name, created_at, updated_at) VALUES ('obama', 1, 1)")
            )
    finally:
        engine.dispose()
    store = Store(db_url)
    try:
        store.migrate()
        (person,) = store.list_people()
        assert (person.name, person.display_name, person.notes, person.reason) == (
            "obama",
            "obama",
            "",
            "",
        )
    finally:
        store.close()


def test_alerts_of_a_version_5_database_are_a_watched_persons_after_the_upgrade(
    db_url: str,
) -> None:
    engine = sa.create_engine(db_url)
    try:
        assert migrate(engine, target=5) == 5
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO alerts (person, camera, started_at, last_seen_at, frames, "
                    "distance) VALUES ('obama', 'door', 1, 2, 3, 0.3)"
                )
            )
    finally:
        engine.dispose()
    store = Store(db_url)
    try:
        store.migrate()
        (alert,) = store.alerts()
        assert (alert.person, alert.frames, alert.visitor_id) == ("obama", 3, None)
    finally:
        store.close()
