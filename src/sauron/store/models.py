"""The store's tables as SQLAlchemy 2 ORM models.

The schema itself is created and changed only by :mod:`sauron.store.migrations`; these
classes are how the code reads and writes it (a test checks the two agree). Times are
Unix seconds (float), embeddings 128 float32 values as raw little-endian bytes, photos
the bytes as uploaded; snapshots and clips are files whose paths the rows keep
(``store/media.py``). Every row reads the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class Keyed:
    """A row numbered by the database: an auto-incrementing key named ``id``."""

    id: Mapped[int] = mapped_column(BigId, primary_key=True, sort_order=-1)  # first column


class Person(Keyed, Base):
    __tablename__ = "persons"

    name: Mapped[str] = mapped_column(String(64), unique=True)  # the id
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    display_name: Mapped[str | None] = mapped_column(String(128))  # NULL: the id
    notes: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    photos: Mapped[list[Photo]] = relationship(
        back_populates="person",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Photo.id",
    )


class Photo(Keyed, Base):
    __tablename__ = "photos"

    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float)
    person: Mapped[Person] = relationship(back_populates="photos")


class Sighting(Keyed, Base):
    __tablename__ = "sightings"
    __table_args__ = (
        UniqueConstraint("camera", "ts", "face", name="uq_sightings_camera_ts_face"),
        Index("ix_sightings_ts", "ts"),
        Index("ix_sightings_person_ts", "person", "ts"),
        Index("ix_sightings_camera_ts", "camera", "ts"),
    )

    camera: Mapped[str] = mapped_column(String(64))
    frame: Mapped[int] = mapped_column(BigInteger)
    ts: Mapped[float] = mapped_column(Float)
    face: Mapped[int] = mapped_column(Integer)
    track: Mapped[int] = mapped_column(BigInteger)
    person: Mapped[str | None] = mapped_column(String(64))
    distance: Mapped[float | None] = mapped_column(Float)
    x0: Mapped[int] = mapped_column(Integer)
    y0: Mapped[int] = mapped_column(Integer)
    x1: Mapped[int] = mapped_column(Integer)
    y1: Mapped[int] = mapped_column(Integer)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    snapshot: Mapped[bytes | None] = mapped_column(LargeBinary)  # before schema 4
    snapshot_path: Mapped[str | None] = mapped_column(String(255))
    snapshot_bytes: Mapped[int | None] = mapped_column(Integer)
    votes: Mapped[int | None] = mapped_column(Integer)


class Alert(Keyed, Base):
    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_started_at", "started_at"),)

    person: Mapped[str] = mapped_column(String(64))
    camera: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[float] = mapped_column(Float)
    last_seen_at: Mapped[float] = mapped_column(Float)
    frames: Mapped[int] = mapped_column(Integer)
    distance: Mapped[float] = mapped_column(Float)
    snapshot: Mapped[bytes | None] = mapped_column(LargeBinary)  # before schema 4
    snapshot_path: Mapped[str | None] = mapped_column(String(255))
    snapshot_bytes: Mapped[int | None] = mapped_column(Integer)
    # a returning visitor's alert (``person`` is then "visitor <id>"); NULL: a watched person's
    visitor_id: Mapped[int | None] = mapped_column(BigInteger)


class Clip(Keyed, Base):
    """An MP4 of one appearance, a file in the media folder: ``kind`` "alert" (a watched
    ``person``'s; the alert of the same camera, person and time finds it) or "sighting"
    (faces not on the watchlist, ``person`` None)."""

    __tablename__ = "clips"
    __table_args__ = (
        Index("ix_clips_camera_started_at", "camera", "started_at"),
        Index("ix_clips_ended_at", "ended_at"),
    )

    camera: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    person: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float] = mapped_column(Float)
    path: Mapped[str] = mapped_column(String(255))
    bytes: Mapped[int] = mapped_column(Integer)


class AlertAck(Base):
    """An alert an operator acknowledged (deleted with the alert)."""

    __tablename__ = "alert_acks"
    alert_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True
    )
    username: Mapped[str] = mapped_column(String(64))
    ts: Mapped[float] = mapped_column(Float)


class Visitor(Keyed, Base):
    """A face of no enrolled person seen again and again: a pseudo-identity whose
    centroid is the mean of its visits' embeddings."""

    __tablename__ = "visitors"
    __table_args__ = (Index("ix_visitors_last_seen", "last_seen"), {"sqlite_autoincrement": True})

    created_at: Mapped[float] = mapped_column(Float)
    first_seen: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float)
    visits: Mapped[int] = mapped_column(Integer)
    centroid: Mapped[bytes] = mapped_column(LargeBinary)


class Visit(Keyed, Base):
    """One track of a visitor (one camera, one pass): its best face's embedding and crop."""

    __tablename__ = "visits"
    __table_args__ = (Index("ix_visits_ended_at", "ended_at"),)

    visitor_id: Mapped[int] = mapped_column(
        ForeignKey("visitors.id", ondelete="CASCADE"), index=True
    )
    camera: Mapped[str] = mapped_column(String(64))
    track: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float] = mapped_column(Float)
    quality: Mapped[float] = mapped_column(Float)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    snapshot: Mapped[bytes | None] = mapped_column(LargeBinary)


class Correction(Keyed, Base):
    """An operator's correction of a name: ``not`` (a negative example: this face is not
    ``person``) or ``is`` (the face was added to ``person``'s photos)."""

    __tablename__ = "corrections"
    __table_args__ = (Index("ix_corrections_person", "person"),)

    ts: Mapped[float] = mapped_column(Float)
    username: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    person: Mapped[str] = mapped_column(String(64))
    sighting_id: Mapped[int | None] = mapped_column(BigInteger)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)


class User(Keyed, Base):
    __tablename__ = "users"

    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float)


class Token(Keyed, Base):
    __tablename__ = "tokens"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float | None] = mapped_column(Float)
    user: Mapped[User] = relationship()


class AuditEntry(Keyed, Base):
    __tablename__ = "audit"
    __table_args__ = (Index("ix_audit_ts", "ts"),)

    ts: Mapped[float] = mapped_column(Float)
    username: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(255))
    detail: Mapped[str] = mapped_column(Text)


class StoreMeta(Base):
    __tablename__ = "store_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
