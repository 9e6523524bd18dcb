"""The wire format: exact round trips, and refusal of anything malformed with a CodecError."""

from __future__ import annotations

import itertools
import json
import struct
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sauron import SauronError
from sauron.codec import (
    MAGIC,
    MAX_LATE,
    MAX_META_BYTES,
    VERSION,
    CameraReport,
    CodecError,
    Kind,
    Person,
    decode_camera_report,
    decode_detections,
    decode_frame,
    decode_person,
    decode_result,
    decode_sighting,
    encode_camera_report,
    encode_detections,
    encode_frame,
    encode_person,
    encode_result,
    encode_sighting,
    peek_kind,
)
from sauron.types import NUM_LANDMARKS, Detections, Frame, Result, Sighting

HEADER = struct.Struct(">3sBBI")
FUZZ = settings(
    max_examples=300, deadline=None, derandomize=True, database=None, report_multiple_bugs=False
)

FRAME = Frame(
    camera="gate-2",
    number=1234,
    captured_at=1712345678.123456,
    jpeg=b"\xff\xd8\xff\xe0 not really a jpeg \x00\x01\xff\xd9",
)


def _detections() -> Detections:
    rng = np.random.default_rng(7)
    return Detections(
        xyxy=np.array([[10, 20, 110, 130], [-3, 0, 50, 2**31 - 1]], np.int32),
        confidence=np.array([2.5, -0.125], np.float32),
        landmarks=rng.normal(size=(2, NUM_LANDMARKS, 2)).astype(np.float32),
        embeddings=rng.normal(size=(2, 128)).astype(np.float32),
        names=("alice", None),
        distances=np.array([0.4375, np.nan], np.float32),
        track_ids=np.array([17, 2**40], np.int64),
    )


DETECTIONS = _detections()
TIMINGS = {"decode": 1.25, "detect": 30.5}
RESULT = Result(
    frame=FRAME,
    detections=DETECTIONS,
    processed_at=1712345678.5,
    annotated_jpeg=b"\xff\xd8annotated\xff\xd9",
    timings_ms=TIMINGS,
)
SIGHTING = Sighting(
    camera="gate-2",
    frame=1234,
    ts=1.5,
    track=17,
    person="alice",
    distance=0.4375,
    box=(10, 20, 110, 130),
    votes=2,
)
PERSON = Person(
    name="alice", embeddings=np.random.default_rng(3).normal(size=(3, 128)).astype(np.float32)
)
REPORT = CameraReport(
    camera="gate-2", state="failed", frames=12, ts=1712345678.5, error="no such file", host="h1"
)

VALID: dict[Kind, bytes] = {
    Kind.FRAME: encode_frame(FRAME),
    Kind.DETECTIONS: encode_detections(FRAME, DETECTIONS, TIMINGS),
    Kind.RESULT: encode_result(RESULT),
    Kind.SIGHTING: encode_sighting(SIGHTING),
    Kind.PERSON: encode_person(PERSON),
    Kind.CAMERA_STATUS: encode_camera_report(REPORT),
}
DECODERS: dict[Kind, Callable[[bytes], Any]] = {
    Kind.FRAME: decode_frame,
    Kind.DETECTIONS: decode_detections,
    Kind.RESULT: decode_result,
    Kind.SIGHTING: decode_sighting,
    Kind.PERSON: decode_person,
    Kind.CAMERA_STATUS: decode_camera_report,
}
ALL_DECODERS = [peek_kind, *DECODERS.values()]


def split(msg: bytes) -> tuple[int, dict[str, Any], bytes]:
    """(kind, metadata, blob bytes) of a valid message."""
    _, _, kind, meta_len = HEADER.unpack_from(msg)
    meta = json.loads(msg[HEADER.size : HEADER.size + meta_len])
    return kind, meta, msg[HEADER.size + meta_len :]


def pack(
    kind: int, meta_bytes: bytes, tail: bytes = b"", *, magic: bytes = MAGIC, version: int = VERSION
) -> bytes:
    return HEADER.pack(magic, version, kind, len(meta_bytes)) + meta_bytes + tail


def assert_same_detections(a: Detections, b: Detections) -> None:
    for name in (
        "xyxy",
        "confidence",
        "landmarks",
        "embeddings",
        "distances",
        "track_ids",
        "votes",
    ):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        assert x.shape == y.shape, name
        np.testing.assert_array_equal(x, y, err_msg=name)
    assert a.names == b.names
    assert a.label == b.label


# ----------------------------------------------------------------------------- round trips


def test_frame_round_trip() -> None:
    back = decode_frame(VALID[Kind.FRAME])
    assert back == FRAME
    assert type(back.jpeg) is bytes


def test_detections_round_trip() -> None:
    frame, det, timings = decode_detections(VALID[Kind.DETECTIONS])
    assert frame == FRAME
    assert_same_detections(det, DETECTIONS)
    assert timings == TIMINGS


def test_a_still_frame_and_votes_round_trip() -> None:
    still = Frame("folder", 3, 10.0, b"jpeg", still=True)
    assert decode_frame(encode_frame(still)) == still
    det = DETECTIONS.with_identities(
        DETECTIONS.names, DETECTIONS.distances, np.arange(len(DETECTIONS), dtype=np.int32)
    )
    frame, back, _ = decode_detections(encode_detections(still, det, {}))
    assert frame.still
    assert_same_detections(back, det)


def test_empty_person_detections_round_trip() -> None:
    empty = Detections.empty(0, label="person")
    frame, det, timings = decode_detections(encode_detections(FRAME, empty, {}))
    assert frame == FRAME
    assert_same_detections(det, empty)
    assert timings == {}


def test_result_round_trip() -> None:
    back = decode_result(VALID[Kind.RESULT])
    assert back.frame == FRAME
    assert_same_detections(back.detections, DETECTIONS)
    assert back.processed_at == RESULT.processed_at
    assert back.annotated_jpeg == RESULT.annotated_jpeg
    assert back.timings_ms == TIMINGS
    assert back.to_json() == RESULT.to_json()


def test_a_result_with_late_results_round_trips() -> None:
    earlier = Result(
        Frame("cam-1", 3, 10.0, b"\xff\xd8old"),
        DETECTIONS[[0]].with_identities(["alice"], np.array([0.55], np.float32)),
        12.0,
    )
    result = replace(RESULT, late=(earlier, replace(earlier, processed_at=13.0)))
    back = decode_result(encode_result(result))
    assert [r.frame for r in back.late] == [earlier.frame, earlier.frame]
    assert [r.processed_at for r in back.late] == [12.0, 13.0]
    assert_same_detections(back.late[0].detections, earlier.detections)
    assert back.to_json() == result.to_json()
    assert back.to_json()["late"][0]["faces"][0]["person"] == "alice"
    assert decode_result(VALID[Kind.RESULT]).late == ()


def test_a_result_without_its_jpeg_keeps_everything_else() -> None:
    earlier = Result(Frame("cam-1", 3, 10.0, b"\xff\xd8old"), DETECTIONS[[0]], 12.0)
    result = replace(RESULT, late=(earlier,))
    full = encode_result(result)
    slim = encode_result(result, with_jpeg=False)
    assert len(FRAME.jpeg) <= len(full) - len(slim) <= len(FRAME.jpeg) + 8  # + the table
    back = decode_result(slim)
    assert back.frame == replace(FRAME, jpeg=b"")
    assert back.annotated_jpeg == RESULT.annotated_jpeg  # a drawn frame stays
    assert_same_detections(back.detections, DETECTIONS)
    assert back.late[0].frame == earlier.frame  # late results keep their pixels
    assert back.to_json() == result.to_json()
    assert encode_result(back, with_jpeg=False) == slim  # leaving it out again: the same
    assert encode_result(back) == slim  # a result without its JPEG encodes as it came
    with pytest.raises(CodecError):
        decode_result(VALID[Kind.FRAME])


def test_late_results_are_bounded_and_never_nested() -> None:
    one = replace(RESULT, late=(RESULT,))
    with pytest.raises(CodecError, match="late"):
        encode_result(replace(RESULT, late=(one,)))
    with pytest.raises(CodecError, match="late"):
        encode_result(replace(RESULT, late=(RESULT,) * (MAX_LATE + 1)))
    # a message that claims more late results than it carries, or nests them
    _, meta, body = split(encode_result(one))
    meta["late"] = 2
    with pytest.raises(CodecError):
        decode_result(pack(Kind.RESULT, json.dumps(meta).encode(), body))
    meta["late"] = 10**9
    with pytest.raises(CodecError):
        decode_result(pack(Kind.RESULT, json.dumps(meta).encode(), body))


def test_sighting_round_trip() -> None:
    assert decode_sighting(VALID[Kind.SIGHTING]) == SIGHTING
    # on the wire the box is [top, right, bottom, left], as in the results file
    _, meta, _ = split(VALID[Kind.SIGHTING])
    assert meta["event"]["box"] == [20, 110, 130, 10]


def test_person_round_trip() -> None:
    back = decode_person(VALID[Kind.PERSON])
    assert back.name == "alice"
    assert back.embeddings.dtype == np.float32
    np.testing.assert_array_equal(back.embeddings, PERSON.embeddings)


def test_camera_report_round_trip() -> None:
    assert decode_camera_report(VALID[Kind.CAMERA_STATUS]) == REPORT


@pytest.mark.parametrize(
    "report",
    [{"camera": "x"}, {**REPORT.__dict__, "frames": "many"}, {**REPORT.__dict__, "camera": 3}],
)
def test_a_bad_camera_report_is_refused(report: dict[str, Any]) -> None:
    data = pack(Kind.CAMERA_STATUS, json.dumps({"report": report, "blobs": []}).encode())
    with pytest.raises(CodecError, match="bad camera status record"):
        decode_camera_report(data)


def test_person_embeddings_are_stored_as_float32() -> None:
    person = Person(name="bob", embeddings=np.full((1, 128), 1 / 3, np.float64))
    back = decode_person(encode_person(person))
    assert back.embeddings.dtype == np.float32
    np.testing.assert_array_equal(back.embeddings, np.full((1, 128), 1 / 3, np.float32))


@pytest.mark.parametrize("shape", [(0, 128), (128,)])
def test_person_needs_a_non_empty_2d_matrix(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=rf"but got shape \({shape[0]},"):
        Person(name="x", embeddings=np.zeros(shape, np.float32))


@pytest.mark.parametrize("kind", list(Kind))
def test_peek_kind_names_each_kind(kind: Kind) -> None:
    assert peek_kind(VALID[kind]) is kind


def test_blobs_travel_raw_not_as_json() -> None:
    # The JPEG bytes appear verbatim after the metadata, and the metadata is small JSON.
    _, meta, tail = split(VALID[Kind.FRAME])
    assert tail == FRAME.jpeg
    assert meta["blobs"] == [["jpeg", "bytes", [len(FRAME.jpeg)], len(FRAME.jpeg)]]
    assert meta["camera"] == "gate-2"


def test_codec_error_is_a_sauron_error() -> None:
    assert issubclass(CodecError, SauronError)


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("decode", ALL_DECODERS)
def test_wrong_magic(decode: Callable[[bytes], Any]) -> None:
    data = b"XYZ" + VALID[Kind.FRAME][3:]
    with pytest.raises(
        CodecError,
        match=r"not a Sauron message: expected magic b'SAU', "
        r"got b'XYZ'",
    ):
        decode(data)


@pytest.mark.parametrize("decode", ALL_DECODERS)
def test_unknown_version_is_named(decode: Callable[[bytes], Any]) -> None:
    data = bytearray(VALID[Kind.FRAME])
    data[3] = 7
    with pytest.raises(CodecError, match="unsupported message version 7"):
        decode(bytes(data))


@pytest.mark.parametrize("decode", ALL_DECODERS)
def test_unknown_kind(decode: Callable[[bytes], Any]) -> None:
    data = bytearray(VALID[Kind.FRAME])
    data[4] = 99
    with pytest.raises(CodecError, match="unknown message kind 99"):
        decode(bytes(data))


@pytest.mark.parametrize("decode", ALL_DECODERS)
@pytest.mark.parametrize("size", [0, 1, 3, HEADER.size - 1])
def test_shorter_than_a_header(decode: Callable[[bytes], Any], size: int) -> None:
    with pytest.raises(CodecError, match=f"message too short: {size} bytes"):
        decode(VALID[Kind.FRAME][:size])


@pytest.mark.parametrize("kind", list(Kind))
def test_truncated_blob(kind: Kind) -> None:
    data = VALID[kind]
    # a sighting and a camera report have no blobs: cutting one cuts the metadata
    no_blobs = kind in (Kind.SIGHTING, Kind.CAMERA_STATUS)
    pattern = "does not fit" if no_blobs else r"truncated: \d+ of \d+ bytes"
    with pytest.raises(CodecError, match=pattern):
        DECODERS[kind](data[:-1])


@pytest.mark.parametrize("kind", list(Kind))
def test_truncated_metadata(kind: Kind) -> None:
    data = VALID[kind]
    cut = HEADER.size + 5
    with pytest.raises(CodecError, match=f"metadata length \\d+ does not fit a {cut}-byte"):
        DECODERS[kind](data[:cut])


@pytest.mark.parametrize("kind", list(Kind))
def test_trailing_bytes(kind: Kind) -> None:
    with pytest.raises(CodecError, match="3 unexpected trailing bytes"):
        DECODERS[kind](VALID[kind] + b"abc")


def test_metadata_length_over_the_limit() -> None:
    data = HEADER.pack(MAGIC, VERSION, Kind.SIGHTING, MAX_META_BYTES + 1) + b"{}"
    with pytest.raises(CodecError, match=f"metadata length {MAX_META_BYTES + 1} does not fit"):
        decode_sighting(data)


@pytest.mark.parametrize(
    "meta",
    [
        b"{not json",
        b"\xff\xfe\xfd",
        b'{"camera": "c"}',
        b"[]",
        b'"blobs"',
        b"42",
        b'{"blobs": 5}',
        b'{"blobs": [["jpeg", "bytes", [3]]]}',
        b'{"blobs": [["jpeg", "no-such-dtype", [1], 1]]}',
    ],
)
def test_corrupt_metadata(meta: bytes) -> None:
    with pytest.raises(CodecError, match=r"corrupt (metadata|blob table)|must have dtype"):
        decode_frame(pack(Kind.FRAME, meta, b"x"))


def test_corrupt_metadata_same_length() -> None:
    kind, meta, tail = split(VALID[Kind.DETECTIONS])
    meta_bytes = json.dumps(meta, separators=(",", ":")).encode()
    garbage = b"#" * len(meta_bytes)
    with pytest.raises(CodecError, match="corrupt metadata"):
        decode_detections(pack(kind, garbage, tail))


def test_blob_table_that_does_not_add_up() -> None:
    kind, meta, tail = split(VALID[Kind.PERSON])
    meta["blobs"][0][2] = [3, 127]  # 3*127 floats is not the 3*128 floats sent
    with pytest.raises(CodecError, match="corrupt blob table"):
        decode_person(pack(kind, json.dumps(meta).encode(), tail))


def test_missing_fields() -> None:
    kind, meta, tail = split(VALID[Kind.FRAME])
    del meta["camera"]
    with pytest.raises(CodecError, match="bad frame fields"):
        decode_frame(pack(kind, json.dumps(meta).encode(), tail))
    kind, meta, tail = split(VALID[Kind.DETECTIONS])
    del meta["names"]
    with pytest.raises(CodecError, match="bad detections"):
        decode_detections(pack(kind, json.dumps(meta).encode(), tail))
    kind, meta, tail = split(VALID[Kind.RESULT])
    del meta["processed_at"]
    with pytest.raises(CodecError, match="bad result fields"):
        decode_result(pack(kind, json.dumps(meta).encode(), tail))
    kind, meta, tail = split(VALID[Kind.PERSON])
    del meta["name"]
    with pytest.raises(CodecError, match="bad person record"):
        decode_person(pack(kind, json.dumps(meta).encode(), tail))
    kind, meta, tail = split(VALID[Kind.SIGHTING])
    meta["event"] = [1, 2]
    with pytest.raises(CodecError, match="no event object"):
        decode_sighting(pack(kind, json.dumps(meta).encode(), tail))
    for broken in ({"box": [1, 2, 3]}, {"frame": "x"}, {"camera": None, "box": None}):
        kind, meta, tail = split(VALID[Kind.SIGHTING])
        meta["event"] = {**meta["event"], **broken}
        with pytest.raises(CodecError, match="bad sighting event"):
            decode_sighting(pack(kind, json.dumps(meta).encode(), tail))


def test_camera_names_from_the_wire_follow_the_configuration_rule() -> None:
    """A camera name read off Kafka is one a configuration could have given: it becomes a
    page of the web app, a file name of a clip, a label of a metric."""
    for bad in ("../etc", "a b", "<script>", "x" * 65, ""):
        kind, meta, tail = split(VALID[Kind.FRAME])
        meta["camera"] = bad
        with pytest.raises(CodecError, match="camera name"):
            decode_frame(pack(kind, json.dumps(meta).encode(), tail))
        kind, meta, tail = split(VALID[Kind.CAMERA_STATUS])
        meta["report"]["camera"] = bad
        with pytest.raises(CodecError, match="camera name"):
            decode_camera_report(pack(kind, json.dumps(meta).encode(), tail))
        kind, meta, tail = split(VALID[Kind.SIGHTING])
        meta["event"]["camera"] = bad
        with pytest.raises(CodecError, match="camera name"):
            decode_sighting(pack(kind, json.dumps(meta).encode(), tail))


def test_invalid_values_are_refused() -> None:
    kind, meta, tail = split(VALID[Kind.FRAME])
    meta["frame"] = -5
    with pytest.raises(CodecError, match="frame number must be >= 0"):
        decode_frame(pack(kind, json.dumps(meta).encode(), tail))
    kind, meta, tail = split(VALID[Kind.DETECTIONS])
    meta["names"] = ["only one"]
    with pytest.raises(CodecError, match="names must have 2 entries"):
        decode_detections(pack(kind, json.dumps(meta).encode(), tail))


@pytest.mark.parametrize(("sent", "wanted"), list(itertools.permutations(Kind, 2)))
def test_wrong_kind_for_the_decoder(sent: Kind, wanted: Kind) -> None:
    with pytest.raises(CodecError, match=f"expected a {wanted.name} message, but got {sent.name}"):
        DECODERS[wanted](VALID[sent])


# ------------------------------------------------------------- targeted robustness regressions


def _with_field(kind: Kind, path: tuple[Any, ...], value: Any) -> bytes:
    """A valid message of ``kind`` whose metadata at ``path`` is replaced by ``value``."""
    k, meta, tail = split(VALID[kind])
    target = meta
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return pack(k, json.dumps(meta).encode(), tail)


def _frame_meta_raw(fragment: bytes) -> bytes:
    meta = b'{"camera":"c",' + fragment + b',"blobs":[["jpeg","bytes",[1],1]]}'
    return pack(Kind.FRAME, meta, b"x")


@pytest.mark.parametrize(
    ("decode", "data"),
    [
        pytest.param(decode_frame, pack(Kind.FRAME, b"[" * 100_000), id="deeply-nested-meta"),
        pytest.param(
            decode_frame,
            _with_field(Kind.FRAME, ("frame",), float("inf")),
            id="frame-number-infinity",
        ),
        pytest.param(
            decode_frame, _frame_meta_raw(b'"frame":1,"ts":' + b"9" * 400), id="ts-huge-integer"
        ),
        pytest.param(
            decode_result,
            _with_field(Kind.RESULT, ("processed_at",), 10**400),
            id="processed-at-huge-integer",
        ),
        pytest.param(
            decode_detections, _with_field(Kind.DETECTIONS, ("timings",), [0]), id="timings-list"
        ),
        pytest.param(
            decode_result, _with_field(Kind.RESULT, ("timings",), "ab"), id="timings-string"
        ),
        pytest.param(
            decode_detections,
            _with_field(Kind.DETECTIONS, ("blobs", 1, 1), "bytes"),
            id="xyxy-declared-as-bytes",
        ),
        pytest.param(
            decode_frame,
            _with_field(Kind.FRAME, ("blobs", 0, 1), "|u1"),
            id="jpeg-declared-as-array",
        ),
    ],
)
def test_malformed_fields_raise_codec_error(decode: Callable[[bytes], Any], data: bytes) -> None:
    with pytest.raises(CodecError):
        decode(data)


# ----------------------------------------------------------------------------- fuzzing


def decode_or_codec_error(decode: Callable[[bytes], Any], data: bytes) -> bool:
    """True if decoded, False if refused with a CodecError; anything else propagates."""
    try:
        decode(data)
    except CodecError:
        return False
    return True


@FUZZ
@given(data=st.binary(max_size=512))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    for decode in ALL_DECODERS:
        with pytest.raises(CodecError):
            decode(data)


@FUZZ
@given(kind=st.integers(0, 255), meta_len=st.integers(0, 2**32 - 1), body=st.binary(max_size=512))
def test_fuzz_arbitrary_bytes_behind_a_valid_magic(kind: int, meta_len: int, body: bytes) -> None:
    data = HEADER.pack(MAGIC, VERSION, kind, meta_len) + body
    for decode in DECODERS.values():
        assert not decode_or_codec_error(decode, data)


def _mutate(msg: bytes, ops: list[tuple[str, int, bytes]]) -> bytes:
    out = bytearray(msg)
    for op, where, payload in ops:
        i = where % (len(out) + 1)
        if op == "flip" and i < len(out):
            out[i] ^= payload[0] if payload else 0xFF
        elif op == "set" and i < len(out):
            out[i] = payload[0] if payload else 0
        elif op == "insert":
            out[i:i] = payload
        elif op == "delete":
            del out[i : i + 1 + len(payload)]
        elif op == "truncate":
            del out[i:]
    return bytes(out)


MUTATION = st.tuples(
    st.sampled_from(["flip", "set", "insert", "delete", "truncate"]),
    st.integers(0, 10_000),
    st.binary(max_size=8),
)


@FUZZ
@given(kind=st.sampled_from(list(Kind)), ops=st.lists(MUTATION, min_size=1, max_size=4))
def test_fuzz_mutated_valid_messages(kind: Kind, ops: list[tuple[str, int, bytes]]) -> None:
    data = _mutate(VALID[kind], ops)
    decode_or_codec_error(peek_kind, data)
    for wanted, decode in DECODERS.items():
        if decode_or_codec_error(decode, data):
            # whatever still decodes was read by the decoder of its own kind only
            assert peek_kind(data) is wanted


#: values that confuse types: the extremes JSON can carry, plus any nested JSON
SPECIAL_VALUES = st.sampled_from(
    [
        float("inf"),
        float("-inf"),
        float("nan"),
        10**400,
        -(10**400),
        2**63,
        -1,
        0,
        1.5,
        True,
        None,
        "",
        "bytes",
        "<f4",
        "|O",
        [],
        [0],
        [[]],
        {},
        {"a": None},
        "ab",
    ]
)
JSON_VALUES = SPECIAL_VALUES | st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(meta: dict[str, Any]) -> list[tuple[Any, ...]]:
    paths: list[tuple[Any, ...]] = [(key,) for key in meta]
    for i, blob in enumerate(meta["blobs"]):
        paths.append(("blobs", i))
        paths.extend(("blobs", i, j) for j in range(len(blob)))
    return paths


@pytest.mark.parametrize(
    "kind",
    [
        Kind.FRAME,
        Kind.DETECTIONS,
        Kind.RESULT,
        Kind.SIGHTING,
        Kind.PERSON,
    ],
    ids=lambda kind: kind.name,
)
@FUZZ
@given(data=st.data())
def test_fuzz_metadata_fields_of_any_json_type(kind: Kind, data: st.DataObject) -> None:
    k, meta, tail = split(VALID[kind])
    path = data.draw(st.sampled_from(_paths(meta)), label="path")
    target = meta
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = data.draw(JSON_VALUES, label="value")
    message = pack(k, json.dumps(meta).encode(), tail)
    for wanted, decode in DECODERS.items():
        if decode_or_codec_error(decode, message):
            assert wanted is kind


def test_a_persons_negative_examples_round_trip() -> None:
    neg = np.full((2, 128), 0.25, np.float32)
    back = decode_person(encode_person(Person("carol", PERSON.embeddings, neg)))
    np.testing.assert_array_equal(back.negatives, neg)
    assert decode_person(encode_person(PERSON)).negatives.shape == (0, 128)
    with pytest.raises(ValueError, match="negatives"):
        Person("dan", PERSON.embeddings, np.zeros((1, 5), np.float32))
