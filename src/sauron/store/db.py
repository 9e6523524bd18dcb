"""The Store: one object over the database, with plain records in and out.

Every method opens its own short transaction, so the store can be shared by the web
server's threads, the recorder thread and the retention thread. Records returned are
frozen dataclasses, detached from any session.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sqlalchemy import (
    CursorResult,
    Engine,
    create_engine,
    delete,
    event,
    func,
    make_url,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from sauron import types
from sauron.codec import Person as WirePerson
from sauron.config import StoreConfig
from sauron.match.appearances import AppearanceSpan
from sauron.store import Conflict, NotFound, StoreError
from sauron.store.media import MediaDir, MediaPathError
from sauron.store.migrations import migrate
from sauron.store.models import (
    Alert,
    AlertAck,
    AuditEntry,
    Clip,
    Correction,
    Person,
    Photo,
    Sighting,
    StoreMeta,
    Token,
)
from sauron.types import EMBEDDING_DIM

log = logging.getLogger(__name__)

_NO_NEGATIVES = np.zeros((0, EMBEDDING_DIM), np.float32)


def rowcount(result: Any) -> int:
    """Rows a DELETE/UPDATE touched (typed access to CursorResult.rowcount)."""
    return int(result.rowcount) if isinstance(result, CursorResult) else 0


def embedding_bytes(vec: np.ndarray) -> bytes:
    arr = np.ascontiguousarray(vec, dtype="<f4").reshape(-1)
    if arr.shape != (EMBEDDING_DIM,):
        raise ValueError(f"embedding must have shape ({EMBEDDING_DIM},), but got {arr.shape}")
    return arr.tobytes()


def embedding_array(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


@dataclass(frozen=True)
class NewPhoto:
    filename: str
    content_type: str
    data: bytes
    embedding: np.ndarray
    width: int
    height: int


@dataclass(frozen=True)
class PhotoInfo:
    id: int
    filename: str
    content_type: str
    width: int
    height: int
    created_at: float


@dataclass(frozen=True)
class PersonInfo:
    id: int
    name: str  # the id sightings and alerts carry
    created_at: float
    updated_at: float
    photos: tuple[PhotoInfo, ...]
    display_name: str = ""  # as people write it; the id when none was given
    notes: str = ""
    reason: str = ""  # why this person is watched for
    last_seen: float | None = None  # the newest stored sighting, when asked for
    last_camera: str | None = None


@dataclass(frozen=True)
class PersonDetails:
    """What describes a person beside the photos; None: leave as it is."""

    display_name: str | None = None
    notes: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class NewSighting(types.Sighting):
    """A sighting to store: which face of its frame it is, its embedding and snapshot."""

    face: int
    embedding: np.ndarray | None
    snapshot: bytes | None


@dataclass(frozen=True)
class SightingFields(types.Sighting):
    """What is told of a stored sighting, here and in the web API's answers."""

    id: int


@dataclass(frozen=True)
class SightingInfo(SightingFields):
    has_snapshot: bool


@dataclass(frozen=True)
class AlertInfo(AppearanceSpan):
    """A stored alert: the appearance it records, its id and whether a snapshot is kept."""

    id: int
    has_snapshot: bool
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    visitor_id: int | None = None  # a returning visitor's alert ("visitor <id>")


#: which alerts to list: all, those nobody acknowledged yet, those acknowledged
AlertState = Literal["all", "open", "acknowledged"]


@dataclass(frozen=True)
class AuditInfo:
    id: int
    ts: float
    username: str
    action: str
    target: str
    detail: str


@dataclass(frozen=True)
class SightingFilter:
    person: str | None = None
    camera: str | None = None
    since: float | None = None
    until: float | None = None
    named_only: bool = False
    before_id: int | None = None


@dataclass
class PurgeCounts:
    sightings: int = 0
    alerts: int = 0
    tokens: int = 0
    clips: int = 0
    files: int = 0
    extra: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class NewClip:
    """An MP4 written into the media folder (``path`` relative to it)."""

    camera: str
    kind: str  # "alert" or "sighting"
    person: str | None
    started_at: float
    ended_at: float
    path: str
    bytes: int


@dataclass(frozen=True)
class MediaUsage:
    """Bytes of the media folder's files the database knows of, by what they belong to."""

    sightings: int
    alerts: int
    sighting_clips: int
    alert_clips: int

    @property
    def total(self) -> int:
        return self.sightings + self.alerts + self.sighting_clips + self.alert_clips


# A row's snapshot is a file (schema 4 on) or, for rows stored before, a blob.
_SIGHTING_HAS_SNAPSHOT = or_(Sighting.snapshot_path.is_not(None), Sighting.snapshot.is_not(None))
_ALERT_HAS_SNAPSHOT = or_(Alert.snapshot_path.is_not(None), Alert.snapshot.is_not(None))


def _person_info(p: Person, seen: tuple[float, str] | None = None) -> PersonInfo:
    return PersonInfo(
        p.id,
        p.name,
        p.created_at,
        p.updated_at,
        tuple(
            PhotoInfo(ph.id, ph.filename, ph.content_type, ph.width, ph.height, ph.created_at)
            for ph in p.photos
        ),
        display_name=p.display_name or p.name,
        notes=p.notes or "",
        reason=p.reason or "",
        last_seen=seen[0] if seen else None,
        last_camera=seen[1] if seen else None,
    )


def _sighting_info(s: Sighting, has_snapshot: bool) -> SightingInfo:
    return SightingInfo(
        id=s.id,
        camera=s.camera,
        frame=s.frame,
        ts=s.ts,
        track=s.track,
        person=s.person,
        distance=s.distance,
        box=(s.x0, s.y0, s.x1, s.y1),
        votes=s.votes,
        has_snapshot=has_snapshot,
    )


def _alert_info(a: Alert, has_snapshot: bool, ack: AlertAck | None = None) -> AlertInfo:
    span = {f.name: getattr(a, f.name) for f in fields(AppearanceSpan)}
    return AlertInfo(
        **span,
        id=a.id,
        has_snapshot=has_snapshot,
        acknowledged_at=ack.ts if ack else None,
        acknowledged_by=ack.username if ack else None,
        visitor_id=a.visitor_id,
    )


def _alert_filter(
    q: Any,
    *,
    before_id: int | None = None,
    person: str | None = None,
    camera: str | None = None,
    state: AlertState = "all",
) -> Any:
    """``q`` (over alerts outer-joined with their acknowledgements) narrowed."""
    if before_id is not None:
        q = q.where(Alert.id < before_id)
    if person:
        q = q.where(Alert.person == person)
    if camera:
        q = q.where(Alert.camera == camera)
    if state == "open":
        q = q.where(AlertAck.alert_id.is_(None))
    elif state == "acknowledged":
        q = q.where(AlertAck.alert_id.is_not(None))
    return q


def private_dir(path: Path) -> Path:
    """Create ``path`` readable by its owner only (0700), or make it so: it holds faces,
    embeddings and password hashes."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        log.info("store: %s was readable by others; now by its owner only", path)
        path.chmod(0o700)
    return path


def _private_sqlite_file(url: str) -> None:
    """Create the SQLite file (and tighten an existing one and its journal files) with
    mode 0600, before SQLite opens it; a missing folder is a clear error."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if not path.parent.is_dir():
        raise StoreError(f"cannot open the store {path}: the folder {path.parent} does not exist")
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for f in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if f.exists() and stat.S_IMODE(f.stat().st_mode) & 0o077:
            f.chmod(0o600)
    if stat.S_IMODE(path.parent.stat().st_mode) & 0o077:
        log.warning("store: the folder %s of %s is readable by others", path.parent, path.name)


def database_url(cfg: StoreConfig) -> str:
    if cfg.url:
        return cfg.url
    private_dir(cfg.data_dir)
    return f"sqlite:///{Path(cfg.data_dir) / 'sauron.db'}"


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Any) -> None:
        # IMMEDIATE: take the write lock up front. A deferred transaction that reads and
        # then writes fails at once (SQLITE_BUSY_SNAPSHOT, no busy wait) when another
        # connection wrote in between, e.g. the recorder; transactions here are short.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _default_media_dir(url: str, fallback: Path | None = None) -> Path | None:
    """``media`` beside a SQLite file, else ``fallback`` (the data folder)."""
    database = make_url(url).database or ""
    in_file = database not in ("", ":memory:") and not database.startswith("file:")
    if url.startswith("sqlite") and in_file:
        return Path(database).absolute().parent / "media"
    return fallback


class Store:
    """Persons, photos, sightings, alerts, clips and the audit log (accounts: see
    accounts.py). Snapshots and clips are files in ``media_dir`` (default: ``media``
    beside a SQLite file)."""

    def __init__(self, url: str, media_dir: Path | None = None) -> None:
        self.url = url
        root = media_dir if media_dir is not None else _default_media_dir(url)
        self._media = MediaDir(root) if root is not None else None
        if url.startswith("sqlite"):
            _private_sqlite_file(url)
            self.engine = create_engine(
                url, connect_args={"check_same_thread": False, "timeout": 10}
            )
            _sqlite_pragmas(self.engine)
        else:
            self.engine = create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)
        self.dialect = self.engine.dialect.name
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def media(self) -> MediaDir:
        """The folder of the snapshot and clip files."""
        if self._media is None:
            raise StoreError(
                "this store has no media folder for snapshots and clips: give one "
                "(store.media_dir; a server database has none by default)"
            )
        return self._media

    @classmethod
    def open(cls, cfg: StoreConfig) -> Store:
        """Connect and bring the schema up to date."""
        url = database_url(cfg)
        store = cls(url, cfg.media_dir or _default_media_dir(url, Path(cfg.data_dir) / "media"))
        store.migrate()
        return store

    def migrate(self) -> int:
        return migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @property
    def safe_url(self) -> str:
        """The URL with any password hidden, for logs."""
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as s:
            yield s

    def instance_id(self) -> str:
        with self.session() as s:
            value = s.get(StoreMeta, "instance_id")
            if value is None:
                raise StoreError("store_meta has no instance_id: was the schema migrated?")
            return value.value

    # --- people -------------------------------------------------------------------------

    def list_people(self) -> list[PersonInfo]:
        """Everyone enrolled, with where and when each was last seen."""
        with self.session() as s:
            rows = list(
                s.scalars(select(Person).options(selectinload(Person.photos)).order_by(Person.name))
            )
            seen = self._last_seen(s, [p.name for p in rows])
            return [_person_info(p, seen.get(p.name)) for p in rows]

    @staticmethod
    def _last_seen(s: Session, names: Sequence[str]) -> dict[str, tuple[float, str]]:
        """name -> (time, camera) of the newest stored sighting of each (the index on
        person, ts answers it)."""
        if not names:
            return {}
        newest = (
            select(Sighting.person, func.max(Sighting.ts).label("ts"))
            .where(Sighting.person.in_(names))
            .group_by(Sighting.person)
            .subquery()
        )
        rows = s.execute(
            select(Sighting.person, Sighting.ts, Sighting.camera).join(
                newest, (Sighting.person == newest.c.person) & (Sighting.ts == newest.c.ts)
            )
        ).all()
        return {person: (ts, camera) for person, ts, camera in rows if person is not None}

    def _person(self, s: Session, name: str) -> Person:
        p = s.scalar(select(Person).where(Person.name == name).options(selectinload(Person.photos)))
        if p is None:
            raise NotFound(f"no person named {name!r}")
        return p

    def get_person(self, name: str) -> PersonInfo | None:
        with self.session() as s:
            try:
                p = self._person(s, name)
            except NotFound:
                return None
            return _person_info(p, self._last_seen(s, [name]).get(name))

    def person_by_display_name(self, display_name: str) -> PersonInfo | None:
        """The person enrolled under this name as written (or as id), if any."""
        with self.session() as s:
            p = s.scalar(
                select(Person)
                .where((Person.display_name == display_name) | (Person.name == display_name))
                .options(selectinload(Person.photos))
                .limit(1)
            )
            return None if p is None else _person_info(p)

    def set_person_details(self, name: str, details: PersonDetails) -> PersonInfo:
        with self.session() as s:
            p = self._person(s, name)
            for key in ("display_name", "notes", "reason"):
                value = getattr(details, key)
                if value is not None:
                    setattr(p, key, value)
            p.updated_at = time.time()
            s.flush()
            return _person_info(p, self._last_seen(s, [name]).get(name))

    @staticmethod
    def _photo_rows(photos: Sequence[NewPhoto], now: float) -> list[Photo]:
        return [
            Photo(
                filename=ph.filename,
                content_type=ph.content_type,
                sha256=hashlib.sha256(ph.data).hexdigest(),
                data=ph.data,
                embedding=embedding_bytes(ph.embedding),
                width=ph.width,
                height=ph.height,
                created_at=now,
            )
            for ph in photos
        ]

    def add_person(
        self, name: str, photos: Sequence[NewPhoto], details: PersonDetails | None = None
    ) -> PersonInfo:
        if not photos:
            raise StoreError(f"{name}: a person needs at least one photo")
        now = time.time()
        told = details or PersonDetails()
        try:
            with self.session() as s:
                p = Person(
                    name=name,
                    created_at=now,
                    updated_at=now,
                    display_name=told.display_name,
                    notes=told.notes,
                    reason=told.reason,
                    photos=self._photo_rows(photos, now),
                )
                s.add(p)
                s.flush()
                return _person_info(p)
        except IntegrityError:
            raise Conflict(f"a person named {name!r} is already enrolled") from None

    def add_photos(self, name: str, photos: Sequence[NewPhoto]) -> PersonInfo:
        now = time.time()
        with self.session() as s:
            p = self._person(s, name)
            p.photos.extend(self._photo_rows(photos, now))
            p.updated_at = now
            s.flush()
            return _person_info(p)

    def rename_person(self, old: str, new: str) -> PersonInfo:
        """Rename, and relabel the person's past sightings, alerts, corrections and
        clips."""
        try:
            with self.session() as s:
                p = self._person(s, old)
                p.name, p.updated_at = new, time.time()
                s.flush()
                s.execute(update(Sighting).where(Sighting.person == old).values(person=new))
                s.execute(update(Alert).where(Alert.person == old).values(person=new))
                s.execute(update(Correction).where(Correction.person == old).values(person=new))
                s.execute(update(Clip).where(Clip.person == old).values(person=new))
                return _person_info(p)
        except IntegrityError:
            raise Conflict(f"a person named {new!r} is already enrolled") from None

    def delete_person(self, name: str) -> bool:
        """Delete the person, their photos and the corrections about them."""
        with self.session() as s:
            s.execute(delete(Correction).where(Correction.person == name))
            return bool(rowcount(s.execute(delete(Person).where(Person.name == name))))

    def delete_photo(self, name: str, photo_id: int) -> PersonInfo:
        """Remove one photo; a person's last photo cannot go (delete the person)."""
        with self.session() as s:
            p = self._person(s, name)
            photo = next((ph for ph in p.photos if ph.id == photo_id), None)
            if photo is None:
                raise NotFound(f"{name} has no photo {photo_id}")
            if len(p.photos) == 1:
                raise Conflict(f"{photo_id} is {name}'s only photo; delete the person instead")
            p.photos.remove(photo)
            p.updated_at = time.time()
            s.flush()
            return _person_info(p)

    def photo(self, photo_id: int) -> tuple[bytes, str] | None:
        with self.session() as s:
            row = s.execute(
                select(Photo.data, Photo.content_type).where(Photo.id == photo_id)
            ).first()
            return None if row is None else (row[0], row[1])

    def wire_person(self, name: str) -> WirePerson:
        """The person as matchers want it: the name, one embedding per photo and the
        negative examples ("not this person" corrections)."""
        with self.session() as s:
            p = self._person(s, name)
            refs = np.stack([embedding_array(ph.embedding) for ph in p.photos])
            return WirePerson(name, refs, self._negatives(s, name).get(name, _NO_NEGATIVES))

    def wire_people(self) -> list[WirePerson]:
        with self.session() as s:
            rows = s.execute(
                select(Person.name, Photo.embedding).join(Photo).order_by(Person.name, Photo.id)
            ).all()
            negatives = self._negatives(s)
        by_name: dict[str, list[np.ndarray]] = {}
        for name, emb in rows:
            by_name.setdefault(name, []).append(embedding_array(emb))
        return [
            WirePerson(n, np.stack(v), negatives.get(n, _NO_NEGATIVES)) for n, v in by_name.items()
        ]

    @staticmethod
    def _negatives(s: Session, name: str | None = None) -> dict[str, np.ndarray]:
        q = select(Correction.person, Correction.embedding).where(Correction.kind == "not")
        if name is not None:
            q = q.where(Correction.person == name)
        by_name: dict[str, list[np.ndarray]] = {}
        for person, emb in s.execute(q.order_by(Correction.id)).all():
            by_name.setdefault(person, []).append(embedding_array(emb))
        return {n: np.stack(v) for n, v in by_name.items()}

    # --- corrections --------------------------------------------------------------------

    def add_correction(
        self,
        username: str,
        kind: str,
        person: str,
        embedding: np.ndarray,
        sighting_id: int | None = None,
    ) -> int:
        """Record an operator's correction: ``not`` (a negative example of ``person``) or
        ``is`` (the face was added to ``person``'s photos); the sighting, if any, is
        relabelled: ``person`` for ``is``; no one for ``not`` when it was named
        ``person``."""
        if kind not in ("not", "is"):
            raise ValueError(f"a correction is 'not' or 'is', but got {kind!r}")
        with self.session() as s:
            c = Correction(
                ts=time.time(),
                username=username,
                kind=kind,
                person=person,
                sighting_id=sighting_id,
                embedding=embedding_bytes(embedding),
            )
            s.add(c)
            if sighting_id is not None and kind == "is":
                s.execute(
                    update(Sighting)
                    .where(Sighting.id == sighting_id)
                    .values(person=person, votes=None)
                )
            elif sighting_id is not None:  # unnamed only if it bore the name said wrong
                s.execute(
                    update(Sighting)
                    .where(Sighting.id == sighting_id, Sighting.person == person)
                    .values(person=None, votes=None)
                )
            s.flush()
            return c.id

    def sighting_face(
        self, sighting_id: int
    ) -> tuple[SightingInfo, np.ndarray | None, bytes | None]:
        """A sighting with its embedding and snapshot (NotFound if there is none)."""
        with self.session() as s:
            row = s.get(Sighting, sighting_id)
            if row is None:
                raise NotFound(f"no sighting {sighting_id}")
            emb = embedding_array(row.embedding) if row.embedding else None
            snap = self._read_snapshot((row.snapshot_path, row.snapshot))
            return _sighting_info(row, snap is not None), emb, snap

    # --- sightings ----------------------------------------------------------------------

    def _save_snapshot(self, camera: str, ts: float, data: bytes | None) -> dict[str, Any]:
        if data is None:
            return {"snapshot_path": None, "snapshot_bytes": None}
        path = self.media.write("snapshots", camera, ts, data, ".jpg")
        return {"snapshot_path": path, "snapshot_bytes": len(data)}

    def _read_snapshot(self, row: Any) -> bytes | None:
        if row is None:
            return None
        path, blob = row
        if not path:
            return blob
        try:
            return self.media.read(path)
        except MediaPathError as exc:  # a row edited to point elsewhere: refused, logged
            log.warning("media: snapshot refused: %s", exc)
            return None

    def add_sightings(self, rows: Iterable[NewSighting]) -> list[int]:
        """Insert sightings (their snapshots as files); one already stored (same camera,
        time, face) is skipped and its new snapshot file removed."""
        values = [
            {
                "camera": r.camera,
                "frame": r.frame,
                "ts": r.ts,
                "face": r.face,
                "track": r.track,
                "person": r.person,
                "distance": r.distance,
                "x0": r.box[0],
                "y0": r.box[1],
                "x1": r.box[2],
                "y1": r.box[3],
                "embedding": None if r.embedding is None else embedding_bytes(r.embedding),
                **self._save_snapshot(r.camera, r.ts, r.snapshot),
                "votes": r.votes,
            }
            for r in rows
        ]
        if not values:
            return []
        try:
            ids = self._insert_sightings(values)
        except BaseException:
            self.media.delete(v["snapshot_path"] for v in values)
            raise
        if len(ids) < len(values):  # some were stored before (a frame read again)
            paths = [v["snapshot_path"] for v in values if v["snapshot_path"]]
            with self.session() as s:
                kept = set(
                    s.scalars(
                        select(Sighting.snapshot_path).where(Sighting.snapshot_path.in_(paths))
                    )
                )
            self.media.delete(p for p in paths if p not in kept)
        return ids

    def name_late(self, rows: Iterable[NewSighting]) -> list[NewSighting]:
        """Name stored sightings decided late (a track that ended after one marginal vote:
        ``match.stage.SingleVoteTracks``): the unnamed row of the same camera, capture time
        and track takes the row's name, distance and votes. The rows that found none (not
        stored, e.g. dropped from a full queue) are returned, to be added."""
        missing = []
        with self.session() as s:
            for r in rows:
                done = s.execute(
                    update(Sighting)
                    .where(
                        Sighting.camera == r.camera,
                        Sighting.ts == r.ts,
                        Sighting.track == r.track,
                        Sighting.person.is_(None),
                    )
                    .values(person=r.person, distance=r.distance, votes=r.votes)
                )
                if not rowcount(done):
                    missing.append(r)
        return missing

    def _insert_sightings(self, values: list[dict[str, Any]]) -> list[int]:
        ins = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        stmt = (
            ins(Sighting)
            .on_conflict_do_nothing(index_elements=["camera", "ts", "face"])
            .returning(Sighting.id)
        )
        with self.session() as s:
            return [int(i) for i in s.scalars(stmt, values)]

    def sightings(self, flt: SightingFilter, limit: int = 50) -> list[SightingInfo]:
        """Newest first; page on with ``before_id`` = the last id of the previous page."""
        q = select(Sighting, _SIGHTING_HAS_SNAPSHOT)
        if flt.person:
            q = q.where(Sighting.person == flt.person)
        elif flt.named_only:
            q = q.where(Sighting.person.is_not(None))
        if flt.camera:
            q = q.where(Sighting.camera == flt.camera)
        if flt.since is not None:
            q = q.where(Sighting.ts >= flt.since)
        if flt.until is not None:
            q = q.where(Sighting.ts < flt.until)
        if flt.before_id is not None:
            q = q.where(Sighting.id < flt.before_id)
        q = q.order_by(Sighting.id.desc()).limit(limit)
        with self.session() as s:
            return [_sighting_info(row, bool(has)) for row, has in s.execute(q).all()]

    def sightings_by_ids(self, ids: Sequence[int]) -> dict[int, SightingInfo]:
        out: dict[int, SightingInfo] = {}
        with self.session() as s:
            for start in range(0, len(ids), 500):
                chunk = list(ids[start : start + 500])
                for row, has in s.execute(
                    select(Sighting, _SIGHTING_HAS_SNAPSHOT).where(Sighting.id.in_(chunk))
                ).all():
                    out[row.id] = _sighting_info(row, bool(has))
        return out

    def sighting_snapshot(self, sighting_id: int) -> bytes | None:
        with self.session() as s:
            row = s.execute(
                select(Sighting.snapshot_path, Sighting.snapshot).where(Sighting.id == sighting_id)
            ).first()
        return self._read_snapshot(row)

    def embeddings_after(self, last_id: int, limit: int = 20000) -> tuple[np.ndarray, np.ndarray]:
        """(ids, (n, 128) float32) of embedded sightings with id > last_id, by id."""
        with self.session() as s:
            rows = s.execute(
                select(Sighting.id, Sighting.embedding)
                .where(Sighting.id > last_id, Sighting.embedding.is_not(None))
                .order_by(Sighting.id)
                .limit(limit)
            ).all()
        ids = np.array([r[0] for r in rows], np.int64)
        mat = (
            np.frombuffer(b"".join(r[1] or b"" for r in rows), "<f4")
            .reshape(len(rows), EMBEDDING_DIM)
            .astype(np.float32)
        )
        return ids, mat

    def min_sighting_id(self) -> int | None:
        with self.session() as s:
            return s.scalar(select(func.min(Sighting.id)))

    # --- alerts -------------------------------------------------------------------------

    def add_alert(
        self,
        person: str,
        camera: str,
        ts: float,
        distance: float,
        snapshot: bytes | None,
        *,
        last_seen_at: float | None = None,
        frames: int = 1,
        visitor_id: int | None = None,
    ) -> AlertInfo:
        """A new alert: a watched person's appearance as it starts, or (``visitor_id``)
        a returning visitor's visit once it ended (``person`` is then "visitor <id>")."""
        media = self._save_snapshot(camera, ts, snapshot)
        try:
            with self.session() as s:
                a = Alert(
                    person=person,
                    camera=camera,
                    started_at=ts,
                    last_seen_at=ts if last_seen_at is None else last_seen_at,
                    frames=frames,
                    distance=distance,
                    visitor_id=visitor_id,
                    **media,
                )
                s.add(a)
                s.flush()
                return _alert_info(a, snapshot is not None)
        except BaseException:
            self.media.delete([media["snapshot_path"]])
            raise

    def extend_alert(
        self, alert_id: int, last_seen_at: float, frames: int, distance: float
    ) -> None:
        with self.session() as s:
            s.execute(
                update(Alert)
                .where(Alert.id == alert_id)
                .values(last_seen_at=last_seen_at, frames=frames, distance=distance)
            )

    def alerts(
        self,
        *,
        limit: int = 50,
        before_id: int | None = None,
        person: str | None = None,
        camera: str | None = None,
        state: AlertState = "all",
    ) -> list[AlertInfo]:
        q = _alert_filter(
            select(Alert, _ALERT_HAS_SNAPSHOT, AlertAck).outerjoin(AlertAck),
            before_id=before_id,
            person=person,
            camera=camera,
            state=state,
        )
        with self.session() as s:
            return [
                _alert_info(a, bool(has), ack)
                for a, has, ack in s.execute(q.order_by(Alert.id.desc()).limit(limit)).all()
            ]

    def acknowledge_alerts(
        self,
        username: str,
        *,
        ids: Sequence[int] | None = None,
        person: str | None = None,
        camera: str | None = None,
        up_to_id: int | None = None,
    ) -> list[int]:
        """Mark open alerts acknowledged by ``username``: those of ``ids``, or else every
        open one (of ``person``, of ``camera``, up to ``up_to_id``). Their ids, ascending."""
        q = _alert_filter(
            select(Alert.id).outerjoin(AlertAck), person=person, camera=camera, state="open"
        )
        if ids is not None:
            q = q.where(Alert.id.in_(list(ids)))
        if up_to_id is not None:
            q = q.where(Alert.id <= up_to_id)
        now = time.time()
        with self.session() as s:
            todo = sorted(s.scalars(q))
            s.add_all(AlertAck(alert_id=i, username=username, ts=now) for i in todo)
            try:
                s.flush()
            except IntegrityError:  # acknowledged meanwhile by someone else: theirs stands
                s.rollback()
                return []
            return todo

    def alert(self, alert_id: int) -> AlertInfo | None:
        """One alert with its acknowledgement, if any."""
        with self.session() as s:
            a = s.get(Alert, alert_id)
            if a is None:
                return None
            has = a.snapshot is not None or a.snapshot_path is not None
            return _alert_info(a, has, s.get(AlertAck, alert_id))

    def alert_snapshot(self, alert_id: int) -> bytes | None:
        with self.session() as s:
            row = s.execute(
                select(Alert.snapshot_path, Alert.snapshot).where(Alert.id == alert_id)
            ).first()
        return self._read_snapshot(row)

    # --- audit --------------------------------------------------------------------------

    def audit(self, username: str, action: str, target: str, detail: str = "") -> None:
        with self.session() as s:
            s.add(
                AuditEntry(
                    ts=time.time(),
                    username=username,
                    action=action,
                    target=target[:255],
                    detail=detail,
                )
            )

    def audit_log(
        self,
        *,
        limit: int = 100,
        before_id: int | None = None,
        username: str | None = None,
        action: str | None = None,
    ) -> list[AuditInfo]:
        q = select(AuditEntry)
        if before_id is not None:
            q = q.where(AuditEntry.id < before_id)
        if username:
            q = q.where(AuditEntry.username == username)
        if action:
            q = q.where(AuditEntry.action == action)
        with self.session() as s:
            return [
                AuditInfo(a.id, a.ts, a.username, a.action, a.target, a.detail)
                for a in s.scalars(q.order_by(AuditEntry.id.desc()).limit(limit))
            ]

    # --- retention ----------------------------------------------------------------------

    def purge_before(self, cutoff: float) -> PurgeCounts:
        """Delete sightings, alerts and clips older than ``cutoff``, with their files."""
        counts = PurgeCounts()
        with self.session() as s:
            gone = s.scalars(
                delete(Sighting).where(Sighting.ts < cutoff).returning(Sighting.snapshot_path)
            ).all()
            counts.sightings = len(gone)
            alerts = s.scalars(
                delete(Alert).where(Alert.last_seen_at < cutoff).returning(Alert.snapshot_path)
            ).all()
            counts.alerts = len(alerts)
            clips = self._delete_clips(s, Clip.ended_at < cutoff)
            counts.clips = len(clips)
            counts.extra["corrections"] = rowcount(
                s.execute(delete(Correction).where(Correction.ts < cutoff))
            )
            counts.tokens = rowcount(
                s.execute(
                    delete(Token).where(
                        Token.expires_at.is_not(None), Token.expires_at < time.time()
                    )
                )
            )
        counts.files = self.media.delete([*gone, *alerts, *clips])
        return counts

    # --- clips --------------------------------------------------------------------------

    def add_clip(self, clip: NewClip) -> int:
        with self.session() as s:
            row = Clip(**{f.name: getattr(clip, f.name) for f in fields(NewClip)})
            s.add(row)
            s.flush()
            return row.id

    @staticmethod
    def _alert_clips(alerts: Sequence[Alert | AlertInfo]) -> Any:
        """Clips of these alerts' appearances (same camera and person, times that meet); a
        returning visitor's alert has the clip of the unknown faces of that moment."""
        return select(Clip.path, Clip.camera, Clip.person, Clip.started_at, Clip.ended_at).where(
            or_(
                *(
                    (Clip.camera == a.camera)
                    & (
                        (Clip.kind == "alert") & (Clip.person == a.person)
                        if a.visitor_id is None
                        else Clip.person.is_(None)
                    )
                    & (Clip.started_at <= a.last_seen_at)
                    & (Clip.ended_at >= a.started_at)
                    for a in alerts
                )
            ),
        )

    def alert_clip(self, alert_id: int) -> Path | None:
        """The file of the alert's clip, if one is kept."""
        moment = self.alert_moment(alert_id)
        return None if moment is None else moment[0]

    def alert_moment(self, alert_id: int) -> tuple[Path, float] | None:
        """The alert's clip and the alert's start in it (seconds from its first frame)."""
        with self.session() as s:
            alert = s.get(Alert, alert_id)
            if alert is None:
                return None
            clip = s.execute(self._alert_clips([alert]).order_by(Clip.started_at).limit(1)).first()
            started = alert.started_at
        if clip is None:
            return None
        file = self._clip_file(clip.path)
        return None if file is None else (file, max(0.0, started - clip.started_at))

    def sighting_clip(self, sighting_id: int) -> Path | None:
        """The file of a clip of the sighting's camera that covers its time, if one is
        kept (an alert's clip first)."""
        moment = self.sighting_moment(sighting_id)
        return None if moment is None else moment[0]

    def sighting_moment(self, sighting_id: int) -> tuple[Path, float] | None:
        """The clip that covers the sighting (as :meth:`sighting_clip`) and the sighting's
        time in it, in seconds from the clip's first frame."""
        with self.session() as s:
            row = s.execute(
                select(Sighting.camera, Sighting.ts).where(Sighting.id == sighting_id)
            ).first()
            if row is None:
                return None
            clip = s.execute(
                select(Clip.path, Clip.started_at)
                .where(Clip.camera == row.camera, Clip.started_at <= row.ts)
                .where(Clip.ended_at >= row.ts)
                .order_by(Clip.kind, Clip.id)
                .limit(1)
            ).first()
        if clip is None:
            return None
        file = self._clip_file(clip.path)
        return None if file is None else (file, row.ts - clip.started_at)

    def sightings_with_clips(self, rows: Sequence[SightingInfo]) -> set[int]:
        """The ids of those of ``rows`` that a kept clip covers (camera and time)."""
        if not rows:
            return set()
        lo, hi = min(r.ts for r in rows), max(r.ts for r in rows)
        with self.session() as s:
            clips = s.execute(
                select(Clip.camera, Clip.started_at, Clip.ended_at).where(
                    Clip.camera.in_({r.camera for r in rows}),
                    Clip.started_at <= hi,
                    Clip.ended_at >= lo,
                )
            ).all()
        return {
            r.id
            for r in rows
            for c in clips
            if c.camera == r.camera and c.started_at <= r.ts <= c.ended_at
        }

    def _clip_file(self, path: str | None) -> Path | None:
        if path is None:
            return None
        try:
            file = self.media.resolve(path)
        except MediaPathError as exc:  # a row edited to point elsewhere: refused, logged
            log.warning("media: clip refused: %s", exc)
            return None
        if not file.is_file():
            log.warning("media: clip %s is in the database but not on disk", path)
            return None
        return file

    def alerts_with_clips(self, alerts: Sequence[AlertInfo]) -> set[int]:
        """The ids of those of ``alerts`` that have a clip."""
        if not alerts:
            return set()
        with self.session() as s:
            clips = s.execute(self._alert_clips(alerts)).all()
        return {
            a.id
            for a in alerts
            for c in clips
            if (c.camera, c.person) == (a.camera, a.person if a.visitor_id is None else None)
            and c.started_at <= a.last_seen_at
            and c.ended_at >= a.started_at
        }

    @staticmethod
    def _delete_clips(s: Session, where: Any) -> list[str]:
        return list(s.scalars(delete(Clip).where(where).returning(Clip.path)).all())

    def purge_clips_before(self, kind: str, cutoff: float) -> int:
        """Delete the clips of ``kind`` that ended before ``cutoff``, with their files."""
        with self.session() as s:
            paths = self._delete_clips(s, (Clip.kind == kind) & (Clip.ended_at < cutoff))
        self.media.delete(paths)
        return len(paths)

    # --- disk budget --------------------------------------------------------------------

    def media_usage(self) -> MediaUsage:
        with self.session() as s:
            sightings = s.scalar(select(func.coalesce(func.sum(Sighting.snapshot_bytes), 0)))
            alerts = s.scalar(select(func.coalesce(func.sum(Alert.snapshot_bytes), 0)))
            clips = dict(
                s.execute(select(Clip.kind, func.sum(Clip.bytes)).group_by(Clip.kind)).all()
            )
        return MediaUsage(
            int(sightings or 0),
            int(alerts or 0),
            int(clips.get("sighting") or 0),
            int(clips.get("alert") or 0),
        )

    def trim_oldest(self, kind: str, need: int, batch: int = 500) -> tuple[int, int]:
        """Free at least ``need`` bytes (if there are) by deleting the oldest of ``kind``:
        "sightings" (sightings and clips of faces not watched) or "alerts" (alerts and
        their clips). Returns (rows deleted, bytes freed)."""
        freed = rows = 0
        while freed < need:
            with self.session() as s:
                found = self._oldest(s, kind, batch)
                if not found:
                    break
                chosen = []
                for item in found:
                    chosen.append(item)
                    freed += item[1]
                    if freed >= need:
                        break
                paths = self._delete_chosen(s, chosen)
            rows += len(chosen)
            self.media.delete(paths)
        return rows, freed

    @staticmethod
    def _oldest(s: Session, kind: str, batch: int) -> list[tuple[float, int, str, int]]:
        """(time, bytes, table, id) of the oldest media-holding rows of ``kind``."""
        rows: type[Sighting] | type[Alert]
        if kind == "sightings":
            rows, when, size, clip_kind = Sighting, Sighting.ts, Sighting.snapshot_bytes, "sighting"
        else:
            rows, when, size, clip_kind = Alert, Alert.last_seen_at, Alert.snapshot_bytes, "alert"
        queries = [
            (clip_kind, select(when, size, rows.id).where(size.is_not(None)).order_by(when)),
            (
                "clip",
                select(Clip.ended_at, Clip.bytes, Clip.id)
                .where(Clip.kind == clip_kind)
                .order_by(Clip.ended_at),
            ),
        ]
        found = [
            (ts, n or 0, table, i) for table, q in queries for ts, n, i in s.execute(q.limit(batch))
        ]
        return sorted(found)[:batch]

    def _delete_chosen(self, s: Session, chosen: list[tuple[float, int, str, int]]) -> list[str]:
        ids = {
            t: [i for _, _, table, i in chosen if table == t] for t in ("sighting", "alert", "clip")
        }
        paths: list[str | None] = []
        if ids["sighting"]:
            paths += s.scalars(
                delete(Sighting)
                .where(Sighting.id.in_(ids["sighting"]))
                .returning(Sighting.snapshot_path)
            ).all()
        if ids["alert"]:
            paths += s.scalars(
                delete(Alert).where(Alert.id.in_(ids["alert"])).returning(Alert.snapshot_path)
            ).all()
        if ids["clip"]:
            paths += self._delete_clips(s, Clip.id.in_(ids["clip"]))
        return [p for p in paths if p]
