"""Versioned schema migrations: a small table of applied versions, no extra tool.

Why not Alembic: the schema is a handful of tables owned by this one package, every
migration has to run unattended at start-up on SQLite and PostgreSQL alike, and several
web servers may start at once against one PostgreSQL. A list of numbered Python
functions written with SQLAlchemy Core (so the same code speaks both dialects), applied
in order inside one transaction that holds a lock, does all of that in ~100 lines and no
script directory, env.py or second configuration to keep in step.

Rules: a migration that has shipped never changes (it pins its own table definitions
rather than importing :mod:`sauron.store.models`); a schema change is a new function
appended to :data:`MIGRATIONS`; the models must describe the schema after the last one
(``tests/store/test_migrations.py`` checks).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    text,
)

from sauron.store import StoreError

log = logging.getLogger(__name__)

_BigId = BigInteger().with_variant(Integer(), "sqlite")
# Any constant: the PostgreSQL advisory lock that serialises concurrent migrators.
_PG_LOCK_KEY = 0x5A5230


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _v1_initial(conn: Connection) -> None:
    md = MetaData()

    def table(
        name: str,
        /,
        *extra: Any,
        optional: Collection[str] = (),
        unique: Collection[str] = (),
        **columns: Any,
    ) -> Table:
        """Table ``name``: an ``id`` key, then a column a keyword (name=type: NOT NULL unless
        named in ``optional``; a ForeignKey: the indexed reference to the row this one is
        of), then the constraints and indexes in ``extra``."""
        cols = [
            Column(c, _BigId, kind, nullable=False, index=True)
            if isinstance(kind, ForeignKey)
            else Column(c, kind, nullable=c in optional, unique=c in unique)
            for c, kind in columns.items()
        ]
        return Table(name, md, Column("id", _BigId, primary_key=True), *cols, *extra)

    table(
        "persons",
        unique=("name",),
        name=String(64),
        created_at=Float,
        updated_at=Float,
    )
    table(
        "photos",
        person_id=ForeignKey("persons.id", ondelete="CASCADE"),
        filename=String(255),
        content_type=String(64),
        sha256=String(64),
        data=LargeBinary,
        embedding=LargeBinary,
        width=Integer,
        height=Integer,
        created_at=Float,
    )
    table(
        "sightings",
        UniqueConstraint("camera", "ts", "face", name="uq_sightings_camera_ts_face"),
        Index("ix_sightings_ts", "ts"),
        Index("ix_sightings_person_ts", "person", "ts"),
        Index("ix_sightings_camera_ts", "camera", "ts"),
        optional=("person", "distance", "embedding", "snapshot"),
        camera=String(64),
        frame=BigInteger,
        ts=Float,
        face=Integer,
        track=BigInteger,
        person=String(64),
        distance=Float,
        x0=Integer,
        y0=Integer,
        x1=Integer,
        y1=Integer,
        embedding=LargeBinary,
        snapshot=LargeBinary,
    )
    table(
        "alerts",
        Index("ix_alerts_started_at", "started_at"),
        optional=("snapshot",),
        person=String(64),
        camera=String(64),
        started_at=Float,
        last_seen_at=Float,
        frames=Integer,
        distance=Float,
        snapshot=LargeBinary,
    )
    table(
        "users",
        unique=("username",),
        username=String(64),
        password_hash=String(255),
        role=String(16),
        disabled=Boolean,
        created_at=Float,
    )
    table(
        "tokens",
        optional=("expires_at",),
        unique=("token_hash",),
        user_id=ForeignKey("users.id", ondelete="CASCADE"),
        kind=String(16),
        name=String(64),
        token_hash=String(64),
        created_at=Float,
        expires_at=Float,
    )
    table(
        "audit",
        Index("ix_audit_ts", "ts"),
        ts=Float,
        username=String(64),
        action=String(32),
        target=String(255),
        detail=Text,
    )
    meta = Table(
        "store_meta",
        md,
        Column("key", String(64), primary_key=True),
        Column("value", Text, nullable=False),
    )
    md.create_all(conn)
    # Names this database: a search index built from another database is thrown away.
    conn.execute(meta.insert().values(key="instance_id", value=uuid.uuid4().hex))


def _v2_person_details(conn: Connection) -> None:
    """People as people are named: the name as written (the ``name`` column stays the
    id every sighting and alert carries), notes and the reason for watching. Older rows
    keep NULL: their display name is their id."""
    for column, kind in (("display_name", "VARCHAR(128)"), ("notes", "TEXT"), ("reason", "TEXT")):
        conn.execute(text(f"ALTER TABLE persons ADD COLUMN {column} {kind}"))


def _v3_alert_acks(conn: Connection) -> None:
    """Alerts an operator has handled: who acknowledged which, when (a table of its own,
    gone with its alert)."""
    md = MetaData()
    Table(
        "alert_acks",
        md,
        Column("alert_id", _BigId, ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True),
        Column("username", String(64), nullable=False),
        Column("ts", Float, nullable=False),
    )
    Table("alerts", md, Column("id", _BigId, primary_key=True))  # what the key refers to
    md.create_all(conn, tables=[md.tables["alert_acks"]])


def _v4_media_files(conn: Connection) -> None:
    """Snapshots and clips as files (``store/media.py``): the rows keep their paths and
    sizes. Snapshots stored as blobs before stay where they are and are still served."""
    for name in ("sightings", "alerts"):
        conn.execute(text(f"ALTER TABLE {name} ADD COLUMN snapshot_path VARCHAR(255)"))
        conn.execute(text(f"ALTER TABLE {name} ADD COLUMN snapshot_bytes INTEGER"))
    md = MetaData()
    Table(
        "clips",
        md,
        Column("id", _BigId, primary_key=True),
        Column("camera", String(64), nullable=False),
        Column("kind", String(16), nullable=False),
        Column("person", String(64), nullable=True),
        Column("started_at", Float, nullable=False),
        Column("ended_at", Float, nullable=False),
        Column("path", String(255), nullable=False),
        Column("bytes", Integer, nullable=False),
        Index("ix_clips_camera_started_at", "camera", "started_at"),
        Index("ix_clips_ended_at", "ended_at"),
    )
    md.create_all(conn)


def _v5_visitors(conn: Connection) -> None:
    md = MetaData()
    Table(
        "visitors",
        md,
        Column("id", _BigId, primary_key=True),
        Column("created_at", Float, nullable=False),
        Column("first_seen", Float, nullable=False),
        Column("last_seen", Float, nullable=False),
        Column("visits", Integer, nullable=False),
        Column("centroid", LargeBinary, nullable=False),
        Index("ix_visitors_last_seen", "last_seen"),
        sqlite_autoincrement=True,  # a merged visitor's id is never handed out again
    )
    Table(
        "visits",
        md,
        Column("id", _BigId, primary_key=True),
        Column(
            "visitor_id",
            _BigId,
            ForeignKey("visitors.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        Column("camera", String(64), nullable=False),
        Column("track", BigInteger, nullable=False),
        Column("started_at", Float, nullable=False),
        Column("ended_at", Float, nullable=False),
        Column("quality", Float, nullable=False),
        Column("embedding", LargeBinary, nullable=False),
        Column("snapshot", LargeBinary, nullable=True),
        Index("ix_visits_ended_at", "ended_at"),
    )
    Table(
        "corrections",
        md,
        Column("id", _BigId, primary_key=True),
        Column("ts", Float, nullable=False),
        Column("username", String(64), nullable=False),
        Column("kind", String(16), nullable=False),
        Column("person", String(64), nullable=False),
        Column("sighting_id", BigInteger, nullable=True),
        Column("embedding", LargeBinary, nullable=False),
        Index("ix_corrections_person", "person"),
    )
    md.create_all(conn)
    # the votes behind a sighting's name (1: a single-vote match); NULL on older rows
    conn.execute(text("ALTER TABLE sightings ADD COLUMN votes INTEGER"))


def _v6_visitor_alerts(conn: Connection) -> None:
    """Alerts of returning visitors: the visitor's id (no key: the alert stays, as
    history, when its visitor is merged, promoted or forgotten); NULL: a watched person's."""
    conn.execute(text("ALTER TABLE alerts ADD COLUMN visitor_id BIGINT"))


MIGRATIONS: list[Migration] = [
    Migration(1, "persons, photos, sightings, alerts, users, tokens, audit", _v1_initial),
    Migration(2, "persons: display_name, notes, reason", _v2_person_details),
    Migration(3, "alert_acks: acknowledged alerts", _v3_alert_acks),
    Migration(4, "snapshots and clips as files: paths and sizes, clips", _v4_media_files),
    Migration(5, "visitors, visits, corrections; sightings.votes", _v5_visitors),
    Migration(6, "alerts.visitor_id: alerts of returning visitors", _v6_visitor_alerts),
]


def _version_table(conn: Connection) -> Table:
    md = MetaData()
    table = Table(
        "schema_version",
        md,
        Column("version", Integer, primary_key=True),
        Column("description", String(255), nullable=False),
        Column("applied_at", Float, nullable=False),
    )
    md.create_all(conn)
    return table


def current_version(engine: Engine) -> int:
    with engine.connect() as conn:
        if not inspect(conn).has_table("schema_version"):
            return 0
        return int(conn.execute(text("SELECT MAX(version) FROM schema_version")).scalar() or 0)


def migrate(engine: Engine, target: int | None = None) -> int:
    """Apply the migrations this database lacks, in order; return its version after."""
    latest = MIGRATIONS[-1].version
    target = latest if target is None else target
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # several servers may start at once
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        table = _version_table(conn)
        have = int(conn.execute(text("SELECT MAX(version) FROM schema_version")).scalar() or 0)
        if have > latest:
            raise StoreError(
                f"the database schema is version {have}, newer than this build "
                f"knows ({latest}); upgrade Sauron"
            )
        for m in MIGRATIONS:
            if have < m.version <= target:
                log.info("store: migrating schema to version %d (%s)", m.version, m.description)
                m.apply(conn)
                conn.execute(
                    table.insert().values(
                        version=m.version, description=m.description, applied_at=time.time()
                    )
                )
                have = m.version
    return have
