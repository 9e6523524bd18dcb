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
from collections.abc import Callable
from dataclasses import dataclass

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

    def pk() -> Column[int]:
        return Column("id", _BigId, primary_key=True)

    Table(
        "persons",
        md,
        pk(),
        Column("name", String(64), nullable=False, unique=True),
        Column("created_at", Float, nullable=False),
        Column("updated_at", Float, nullable=False),
    )
    Table(
        "photos",
        md,
        pk(),
        Column(
            "person_id",
            _BigId,
            ForeignKey("persons.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        Column("filename", String(255), nullable=False),
        Column("content_type", String(64), nullable=False),
        Column("sha256", String(64), nullable=False),
        Column("data", LargeBinary, nullable=False),
        Column("embedding", LargeBinary, nullable=False),
        Column("width", Integer, nullable=False),
        Column("height", Integer, nullable=False),
        Column("created_at", Float, nullable=False),
    )
    Table(
        "sightings",
        md,
        pk(),
        Column("camera", String(64), nullable=False),
        Column("frame", BigInteger, nullable=False),
        Column("ts", Float, nullable=False),
        Column("face", Integer, nullable=False),
        Column("track", BigInteger, nullable=False),
        Column("person", String(64)),
        Column("distance", Float),
        *(Column(c, Integer, nullable=False) for c in ("x0", "y0", "x1", "y1")),
        Column("embedding", LargeBinary),
        Column("snapshot", LargeBinary),
        UniqueConstraint("camera", "ts", "face", name="uq_sightings_camera_ts_face"),
        Index("ix_sightings_ts", "ts"),
        Index("ix_sightings_person_ts", "person", "ts"),
        Index("ix_sightings_camera_ts", "camera", "ts"),
    )
    Table(
        "alerts",
        md,
        pk(),
        Column("person", String(64), nullable=False),
        Column("camera", String(64), nullable=False),
        Column("started_at", Float, nullable=False),
        Column("last_seen_at", Float, nullable=False),
        Column("frames", Integer, nullable=False),
        Column("distance", Float, nullable=False),
        Column("snapshot", LargeBinary),
        Index("ix_alerts_started_at", "started_at"),
    )
    Table(
        "users",
        md,
        pk(),
        Column("username", String(64), nullable=False, unique=True),
        Column("password_hash", String(255), nullable=False),
        Column("role", String(16), nullable=False),
        Column("disabled", Boolean, nullable=False),
        Column("created_at", Float, nullable=False),
    )
    Table(
        "tokens",
        md,
        pk(),
        Column(
            "user_id",
            _BigId,
            ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        Column("kind", String(16), nullable=False),
        Column("name", String(64), nullable=False),
        Column("token_hash", String(64), nullable=False, unique=True),
        Column("created_at", Float, nullable=False),
        Column("expires_at", Float),
    )
    Table(
        "audit",
        md,
        pk(),
        Column("ts", Float, nullable=False),
        Column("username", String(64), nullable=False),
        Column("action", String(32), nullable=False),
        Column("target", String(255), nullable=False),
        Column("detail", Text, nullable=False),
        Index("ix_audit_ts", "ts"),
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


MIGRATIONS: list[Migration] = [
    Migration(1, "persons, photos, sightings, alerts, users, tokens, audit", _v1_initial),
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
