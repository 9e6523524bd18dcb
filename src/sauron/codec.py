"""The wire format: one compact, versioned envelope for every message Sauron sends.

Layout of an envelope (all integers big-endian)::

    b"SAU" | version: u8 | kind: u8 | meta_len: u32 | meta (UTF-8 JSON) | blob 0 | blob 1 ...

``meta`` holds the small fields (camera, frame number, capture time, names) and a list of
blob descriptors ``[name, dtype, shape, nbytes]``. Blobs are raw bytes: the JPEG as it came
from the camera and numpy arrays in their native little-endian layout (boxes as int32,
embeddings as float32). No pixels ever travel as JSON or base64.

A decoder refuses anything that does not start with the magic, names an unknown version or
an unknown kind, or whose blobs do not add up, with a :class:`CodecError` saying what was
expected and what arrived.
"""

from __future__ import annotations

import enum
import json
import struct
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from sauron import SauronError
from sauron.config import check_name
from sauron.types import Detections, Frame, Result, Sighting

MAGIC = b"SAU"
VERSION = 1
_HEADER = struct.Struct(">3sBBI")
MAX_META_BYTES = 1 << 20


class CodecError(SauronError):
    """A message could not be decoded; the text says why (used as the dead-letter reason)."""


class Kind(enum.IntEnum):
    FRAME = 1
    DETECTIONS = 2
    RESULT = 3
    SIGHTING = 4
    PERSON = 5
    CAMERA_STATUS = 6


@dataclass(frozen=True)
class Person:
    """A watchlist entry as broadcast to matchers: a name, its reference embeddings and
    its negative examples (faces an operator said are not this person)."""

    name: str
    embeddings: np.ndarray
    negatives: np.ndarray = field(default_factory=lambda: np.zeros((0, 128), np.float32))

    def __post_init__(self) -> None:
        if self.embeddings.ndim != 2 or len(self.embeddings) == 0:
            raise ValueError(
                f"embeddings must be a non-empty 2D array, but got shape {self.embeddings.shape}"
            )
        if self.negatives.ndim != 2 or (
            len(self.negatives) and self.negatives.shape[1] != self.embeddings.shape[1]
        ):
            raise ValueError(
                f"negatives must be a 2D array of {self.embeddings.shape[1]} columns, "
                f"but got shape {self.negatives.shape}"
            )


@dataclass(frozen=True)
class CameraReport:
    """What an ingest process says of one of its cameras, every few seconds, on the
    compacted ``<prefix>.cameras`` topic (key = the camera): so a web server elsewhere
    lists the camera and shows its health without reading its frames."""

    camera: str
    state: str  # starting, running, reconnecting, stopped, failed (CameraStatus.state)
    frames: int
    ts: float  # time.time() of the report
    error: str | None = None
    restarts: int = 0
    host: str = ""


_ARRAY_FIELDS = ("xyxy", "confidence", "landmarks", "embeddings", "distances", "track_ids")
#: Added later: a message without them (from an older build) reads with their defaults.
_OPTIONAL_ARRAYS = ("votes",)
_FIELD_ERRORS = (KeyError, ValueError, TypeError, OverflowError, AttributeError)
_DTYPES = {
    "xyxy": "<i4",
    "confidence": "<f4",
    "landmarks": "<f4",
    "embeddings": "<f4",
    "distances": "<f4",
    "track_ids": "<i8",
    "votes": "<i4",
    "negatives": "<f4",
}
_BLOB_DTYPES = {**_DTYPES, "jpeg": "bytes", "annotated": "bytes"}


def _pack(
    kind: Kind, meta: dict[str, Any], blobs: list[tuple[str, bytes, str, tuple[int, ...]]]
) -> bytes:
    meta = dict(meta)
    meta["blobs"] = [[name, dtype, list(shape), len(data)] for name, data, dtype, shape in blobs]
    meta_bytes = json.dumps(meta, separators=(",", ":")).encode()
    parts = [_HEADER.pack(MAGIC, VERSION, int(kind), len(meta_bytes)), meta_bytes]
    parts.extend(data for _, data, _, _ in blobs)
    return b"".join(parts)


def _array_blob(name: str, arr: np.ndarray) -> tuple[str, bytes, str, tuple[int, ...]]:
    dtype = _DTYPES[name]
    a = np.ascontiguousarray(arr, dtype=dtype)
    return name, a.tobytes(), dtype, a.shape


def peek_kind(data: bytes) -> Kind:
    """Read and check the header; return the message kind."""
    if len(data) < _HEADER.size:
        raise CodecError(f"message too short: {len(data)} bytes, a header needs {_HEADER.size}")
    magic, version, kind, _ = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CodecError(f"not a Sauron message: expected magic {MAGIC!r}, got {magic!r}")
    if version != VERSION:
        raise CodecError(
            f"unsupported message version {version}: this build reads version {VERSION} only"
        )
    try:
        return Kind(kind)
    except ValueError:
        raise CodecError(f"unknown message kind {kind}") from None


def _unpack(data: bytes, expected: Kind) -> tuple[dict[str, Any], dict[str, np.ndarray | bytes]]:
    kind = peek_kind(data)
    if kind != expected:
        raise CodecError(f"expected a {expected.name} message, but got {kind.name}")
    meta_len = _HEADER.unpack_from(data)[3]
    if meta_len > MAX_META_BYTES or _HEADER.size + meta_len > len(data):
        raise CodecError(f"metadata length {meta_len} does not fit a {len(data)}-byte message")
    start = _HEADER.size
    try:
        meta = json.loads(data[start : start + meta_len])
        descriptors = meta.pop("blobs")
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise CodecError(f"corrupt metadata: {exc}") from None
    offset = start + meta_len
    blobs: dict[str, np.ndarray | bytes] = {}
    try:
        for name, dtype, shape, nbytes in descriptors:
            chunk = data[offset : offset + nbytes]
            if len(chunk) != nbytes:
                raise CodecError(f"blob {name!r} truncated: {len(chunk)} of {nbytes} bytes")
            offset += nbytes
            want = _BLOB_DTYPES.get(name)
            if want is not None and dtype != want:
                raise CodecError(f"blob {name!r} must have dtype {want!r}, got {dtype!r}")
            if dtype == "bytes":
                blobs[name] = bytes(chunk)
            else:
                blobs[name] = np.frombuffer(chunk, dtype=np.dtype(dtype)).reshape(shape)
    except (ValueError, TypeError, OverflowError) as exc:
        raise CodecError(f"corrupt blob table: {exc}") from None
    if offset != len(data):
        raise CodecError(f"{len(data) - offset} unexpected trailing bytes")
    return meta, blobs


def _frame_meta(frame: Frame) -> dict[str, Any]:
    meta: dict[str, Any] = {"camera": frame.camera, "frame": frame.number, "ts": frame.captured_at}
    if frame.still:
        meta["still"] = True
    return meta


def _frame_from(meta: dict[str, Any], blobs: dict[str, Any]) -> Frame:
    try:
        return Frame(
            camera=check_name(str(meta["camera"]), "camera name"),
            number=int(meta["frame"]),
            captured_at=float(meta["ts"]),
            jpeg=blobs["jpeg"],
            still=bool(meta.get("still", False)),
        )
    except _FIELD_ERRORS as exc:
        raise CodecError(f"bad frame fields: {exc!r}") from None


def encode_frame(frame: Frame) -> bytes:
    return _pack(
        Kind.FRAME, _frame_meta(frame), [("jpeg", frame.jpeg, "bytes", (len(frame.jpeg),))]
    )


def decode_frame(data: bytes) -> Frame:
    meta, blobs = _unpack(data, Kind.FRAME)
    return _frame_from(meta, blobs)


def _detections_blobs(det: Detections) -> list[tuple[str, bytes, str, tuple[int, ...]]]:
    return [_array_blob(name, getattr(det, name)) for name in (*_ARRAY_FIELDS, *_OPTIONAL_ARRAYS)]


def _detections_from(meta: dict[str, Any], blobs: dict[str, Any]) -> Detections:
    try:
        return Detections(
            **{name: blobs[name] for name in _ARRAY_FIELDS},
            **{name: blobs[name] for name in _OPTIONAL_ARRAYS if name in blobs},
            names=tuple(meta["names"]),
            label=str(meta["label"]),
        )
    except _FIELD_ERRORS as exc:
        raise CodecError(f"bad detections: {exc}") from None


def _timings(meta: dict[str, Any]) -> dict[str, float]:
    raw = meta.get("timings", {})
    try:
        return {str(k): float(v) for k, v in raw.items()}
    except _FIELD_ERRORS as exc:
        raise CodecError(f"bad timings: {exc!r}") from None


def encode_detections(frame: Frame, det: Detections, timings_ms: dict[str, float]) -> bytes:
    """A frame with what the detect stage found in it (the faces topic)."""
    meta = {
        **_frame_meta(frame),
        "names": list(det.names),
        "label": det.label,
        "timings": timings_ms,
    }
    blobs = [("jpeg", frame.jpeg, "bytes", (len(frame.jpeg),)), *_detections_blobs(det)]
    return _pack(Kind.DETECTIONS, meta, blobs)


def decode_detections(data: bytes) -> tuple[Frame, Detections, dict[str, float]]:
    meta, blobs = _unpack(data, Kind.DETECTIONS)
    return _frame_from(meta, blobs), _detections_from(meta, blobs), _timings(meta)


#: The most late results one result carries (a matcher sends at most this many at once).
MAX_LATE = 64


def encode_result(result: Result, *, with_jpeg: bool = True) -> bytes:
    """An annotated frame with its identities (the per-camera annotated topic).
    ``with_jpeg`` False leaves the frame's JPEG out (an empty ``jpeg`` blob), for an
    annotated topic whose one reader already holds the frames it published
    (``bus.annotated_jpeg: false``); late results keep theirs (earlier frames, rare)."""
    frame, det = result.frame, result.detections
    jpeg = frame.jpeg if with_jpeg else b""
    meta = {
        **_frame_meta(frame),
        "names": list(det.names),
        "label": det.label,
        "processed_at": result.processed_at,
        "timings": result.timings_ms,
    }
    blobs = [
        ("jpeg", jpeg, "bytes", (len(jpeg),)),
        ("annotated", result.annotated_jpeg, "bytes", (len(result.annotated_jpeg),)),
        *_detections_blobs(det),
    ]
    if result.late:  # earlier frames decided now: each its own packed result, one level
        if len(result.late) > MAX_LATE or any(r.late for r in result.late):
            raise CodecError(f"at most {MAX_LATE} late results, none with late ones of its own")
        meta["late"] = len(result.late)
        for i, late in enumerate(result.late):
            packed = encode_result(late)
            blobs.append((f"late{i}", packed, "bytes", (len(packed),)))
    return _pack(Kind.RESULT, meta, blobs)


def decode_result(data: bytes) -> Result:
    meta, blobs = _unpack(data, Kind.RESULT)
    try:
        processed_at = float(meta["processed_at"])
        annotated = blobs["annotated"]
        n_late = int(meta.get("late", 0))
        if not 0 <= n_late <= MAX_LATE:
            raise ValueError(f"{n_late} late results")
        late_blobs = [bytes(blobs[f"late{i}"]) for i in range(n_late)]
    except _FIELD_ERRORS as exc:
        raise CodecError(f"bad result fields: {exc!r}") from None
    late = tuple(decode_result(b) for b in late_blobs)
    if any(r.late for r in late):
        raise CodecError("a late result carries late results of its own")
    return Result(
        frame=_frame_from(meta, blobs),
        detections=_detections_from(meta, blobs),
        processed_at=processed_at,
        annotated_jpeg=bytes(annotated),
        timings_ms=_timings(meta),
        late=late,
    )


def encode_sighting(sighting: Sighting) -> bytes:
    """A sighting (no pixels) as its event: the fields of :class:`Sighting`, with the box
    as [top, right, bottom, left] like the results file's faces (docs/results.md)."""
    x0, y0, x1, y1 = sighting.box
    event = {**asdict(sighting), "box": [y0, x1, y1, x0]}
    return _pack(Kind.SIGHTING, {"event": event}, [])


def decode_sighting(data: bytes) -> Sighting:
    meta, _ = _unpack(data, Kind.SIGHTING)
    event = meta.get("event")
    if not isinstance(event, dict):
        raise CodecError("sighting message has no event object")
    try:
        top, right, bottom, left = (int(v) for v in event["box"])
        person, dist, votes = event["person"], event["distance"], event.get("votes")
        return Sighting(
            camera=check_name(str(event["camera"]), "camera name"),
            frame=int(event["frame"]),
            ts=float(event["ts"]),
            track=int(event["track"]),
            person=None if person is None else str(person),
            distance=None if dist is None else float(dist),
            box=(left, top, right, bottom),
            votes=None if votes is None else int(votes),
        )
    except _FIELD_ERRORS as exc:
        raise CodecError(f"bad sighting event: {exc!r}") from None


def encode_person(person: Person) -> bytes:
    """A watchlist entry for the compacted watchlist topic (key = the person's name)."""
    blobs = [_array_blob("embeddings", person.embeddings)]
    if len(person.negatives):
        blobs.append(_array_blob("negatives", person.negatives))
    return _pack(Kind.PERSON, {"name": person.name}, blobs)


def decode_person(data: bytes) -> Person:
    meta, blobs = _unpack(data, Kind.PERSON)
    try:
        embeddings = np.asarray(blobs["embeddings"])
        if "negatives" not in blobs:
            return Person(name=str(meta["name"]), embeddings=embeddings)
        return Person(str(meta["name"]), embeddings, np.asarray(blobs["negatives"]))
    except _FIELD_ERRORS as exc:
        raise CodecError(f"bad person record: {exc}") from None


def encode_camera_report(report: CameraReport) -> bytes:
    return _pack(Kind.CAMERA_STATUS, {"report": asdict(report)}, [])


def decode_camera_report(data: bytes) -> CameraReport:
    meta, _ = _unpack(data, Kind.CAMERA_STATUS)
    fields = meta.get("report")
    if not isinstance(fields, dict):
        raise CodecError("camera status message has no report object")
    try:
        report = CameraReport(**fields)
        if not isinstance(report.camera, str) or not isinstance(report.state, str):
            raise TypeError("camera and state must be text")
        check_name(report.camera, "camera name")
        return replace(
            report, frames=int(report.frames), ts=float(report.ts), restarts=int(report.restarts)
        )
    except _FIELD_ERRORS as exc:
        raise CodecError(f"bad camera status record: {exc}") from None
