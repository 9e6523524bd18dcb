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
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from sauron.codec import Person as WirePerson
from sauron.config import StoreConfig
from sauron.match.appearances import AppearanceSpan
from sauron.store import Conflict, NotFound, StoreError
from sauron.store.migrations import migrate
from sauron.store.models import (
    Alert,
    AlertAck,
    AuditEntry,
    Person,
    Photo,
    Sighting,
    StoreMeta,
    Token,
)
from sauron.types import EMBEDDING_DIM

log = logging.getLogger(__name__)


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
class NewSighting:
    camera: str
    frame: int
    ts: float
    face: int
    track: int
    person: str | None
    distance: float | None
    box: tuple[int, int, int, int]  # x0, y0, x1, y1
    embedding: np.ndarray | None
    snapshot: bytes | None


@dataclass(frozen=True)
class SightingFields:
    """What is told of a stored sighting, here and in the web API's answers."""

    id: int
    camera: str
    frame: int
    ts: float
    track: int
    person: str | None
    distance: float | None
    box: tuple[int, int, int, int]


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
    extra: dict[str, int] = field(default_factory=dict)


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
        s.id,
        s.camera,
        s.frame,
        s.ts,
        s.track,
        s.person,
        s.distance,
        (s.x0, s.y0, s.x1, s.y1),
        has_snapshot,
    )


def _alert_info(a: Alert, has_snapshot: bool, ack: AlertAck | None = None) -> AlertInfo:
    span = {f.name: getattr(a, f.name) for f in fields(AppearanceSpan)}
    return AlertInfo(
        **span,
        id=a.id,
        has_snapshot=has_snapshot,
        acknowledged_at=ack.ts if ack else None,
        acknowledged_by=ack.username if ack else None,
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


class Store:
    """Persons, photos, sightings, alerts and the audit log (accounts: see accounts.py)."""

    def __init__(self, url: str) -> None:
        self.url = url
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

    @classmethod
    def open(cls, cfg: StoreConfig) -> Store:
        """Connect and bring the schema up to date."""
        store = cls(database_url(cfg))
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
        """Rename, and relabel the person's past sightings and alerts."""
        try:
            with self.session() as s:
                p = self._person(s, old)
                p.name, p.updated_at = new, time.time()
                s.flush()
                s.execute(update(Sighting).where(Sighting.person == old).values(person=new))
                s.execute(update(Alert).where(Alert.person == old).values(person=new))
                return _person_info(p)
        except IntegrityError:
            raise Conflict(f"a person named {new!r} is already enrolled") from None

    def delete_person(self, name: str) -> bool:
        with self.session() as s:
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
        """The person as matchers want it: the name and one embedding per photo."""
        with self.session() as s:
            p = self._person(s, name)
            return WirePerson(name, np.stack([embedding_array(ph.embedding) for ph in p.photos]))

    def wire_people(self) -> list[WirePerson]:
        with self.session() as s:
            rows = s.execute(
                select(Person.name, Photo.embedding).join(Photo).order_by(Person.name, Photo.id)
            ).all()
        by_name: dict[str, list[np.ndarray]] = {}
        for name, emb in rows:
            by_name.setdefault(name, []).append(embedding_array(emb))
        return [WirePerson(n, np.stack(v)) for n, v in by_name.items()]

    # --- sightings ----------------------------------------------------------------------

    def add_sightings(self, rows: Iterable[NewSighting]) -> list[int]:
        """Insert sightings; one already stored (same camera, time, face) is skipped."""
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
                "snapshot": r.snapshot,
            }
            for r in rows
        ]
        if not values:
            return []
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
        q = select(Sighting, Sighting.snapshot.is_not(None))
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
                    select(Sighting, Sighting.snapshot.is_not(None)).where(Sighting.id.in_(chunk))
                ).all():
                    out[row.id] = _sighting_info(row, bool(has))
        return out

    def sighting_snapshot(self, sighting_id: int) -> bytes | None:
        with self.session() as s:
            return s.scalar(select(Sighting.snapshot).where(Sighting.id == sighting_id))

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
        self, person: str, camera: str, ts: float, distance: float, snapshot: bytes | None
    ) -> AlertInfo:
        with self.session() as s:
            a = Alert(
                person=person,
                camera=camera,
                started_at=ts,
                last_seen_at=ts,
                frames=1,
                distance=distance,
                snapshot=snapshot,
            )
            s.add(a)
            s.flush()
            return _alert_info(a, snapshot is not None)

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
            select(Alert, Alert.snapshot.is_not(None), AlertAck).outerjoin(AlertAck),
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

    def alert_snapshot(self, alert_id: int) -> bytes | None:
        with self.session() as s:
            return s.scalar(select(Alert.snapshot).where(Alert.id == alert_id))

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
        """Delete sightings (with their snapshots) and alerts older than ``cutoff``."""
        counts = PurgeCounts()
        with self.session() as s:
            counts.sightings = rowcount(s.execute(delete(Sighting).where(Sighting.ts < cutoff)))
            counts.alerts = rowcount(s.execute(delete(Alert).where(Alert.last_seen_at < cutoff)))
            counts.tokens = rowcount(
                s.execute(
                    delete(Token).where(
                        Token.expires_at.is_not(None), Token.expires_at < time.time()
                    )
                )
            )
        return counts
