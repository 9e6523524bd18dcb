"""Settings: defaults, validation with key paths, YAML < environment < CLI overrides."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from sauron import SauronError
from sauron.config import (
    DETECTORS,
    CameraConfig,
    CenterFaceSettings,
    ConfigError,
    DetectConfig,
    DlibCnnSettings,
    DlibHogSettings,
    MatchConfig,
    OpenCVPeopleSettings,
    Settings,
    TopicsConfig,
    check_name,
    load_settings,
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SAURON_* variable from the caller's shell leaks into these tests."""
    for key in list(os.environ):
        if key.upper().startswith("SAURON_"):
            monkeypatch.delenv(key)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sauron.yaml"
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- defaults


def test_defaults() -> None:
    s = load_settings()
    assert s.cameras == []
    assert s.bus.type == "embedded"
    assert s.bus.bootstrap_servers == "127.0.0.1:9092"
    assert s.bus.client == {}
    assert s.topics.prefix == "sauron"
    assert s.topics.partitions == 6
    assert s.topics.partitioning == "camera"
    assert s.detect.detector == CenterFaceSettings(type="centerface", input_scale=0.5)
    assert s.detect.embedder == "auto"
    assert s.detect.tracking is True
    assert s.detect.track_refresh == 15
    assert s.match.tolerance == 0.6
    assert s.match.watchlist is None
    assert s.match.largest_face is False
    assert s.match.annotated_quality == 80


def test_camera_defaults() -> None:
    cam = CameraConfig(name="door", source="0")
    assert (cam.max_width, cam.max_fps, cam.realtime, cam.loop, cam.jpeg_quality) == (
        640,
        None,
        True,
        False,
        85,
    )


def test_topic_names() -> None:
    assert TopicsConfig(prefix="site1").name("frames") == "site1.frames"


def test_settings_are_frozen() -> None:
    s = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        s.match.tolerance = 0.1  # type: ignore[misc]


def test_config_error_is_a_sauron_error() -> None:
    assert issubclass(ConfigError, SauronError)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"match": {"tolerence": 0.5}}, "match.tolerence"),
        ({"detect": {"modle": "dlib-hog"}}, "detect.modle"),
        ({"cameras": [{"name": "a", "source": "x", "fps": 3}]}, "cameras.0.fps"),
        ({"nonsense": 1}, "nonsense"),
    ],
)
def test_unknown_key_is_rejected_with_its_path(overrides: dict, path: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(overrides=overrides)
    assert f"  {path}: Extra inputs are not permitted" in str(info.value)


@pytest.mark.parametrize("tolerance", [0, -0.1, 2.5])
def test_tolerance_out_of_range(tolerance: float) -> None:
    with pytest.raises(ConfigError, match=r"match\.tolerance: Input should be"):
        load_settings(overrides={"match": {"tolerance": tolerance}})


def test_duplicate_camera_names() -> None:
    cams = [
        {"name": "a", "source": "1"},
        {"name": "b", "source": "2"},
        {"name": "a", "source": "3"},
    ]
    with pytest.raises(
        ConfigError,
        match=r"cameras: .*camera names must be unique, "
        r"repeated: \['a'\]",
    ):
        load_settings(overrides={"cameras": cams})


@pytest.mark.parametrize("name", ["", "bad name", "../etc", ".hidden", "x" * 65, "caf\u00e9"])
def test_bad_camera_name(name: str) -> None:
    with pytest.raises(ConfigError, match=r"cameras\.0\.name: .*camera name"):
        load_settings(overrides={"cameras": [{"name": name, "source": "x"}]})


@pytest.mark.parametrize("name", ["a", "Cam-1", "lobby_2.north", "0", "x" * 64])
def test_good_names(name: str) -> None:
    assert check_name(name, "camera name") == name


def test_bad_detector_name_is_impossible() -> None:
    expected = r"detect\.detector: Input tag 'yolo' .* expected tags: 'centerface', 'dlib-hog'"
    with pytest.raises(ConfigError, match=expected):
        load_settings(overrides={"detect": {"detector": {"type": "yolo"}}})
    with pytest.raises(ConfigError, match=expected):
        load_settings(overrides={"detect": {"model": "yolo"}})  # the flat key of before


def test_each_detector_takes_only_its_own_settings() -> None:
    s = load_settings(overrides={"detect": {"detector": {"type": "dlib-hog", "upsample": 1}}})
    assert s.detect.detector == DlibHogSettings(upsample=1)
    with pytest.raises(ConfigError, match=r"detect\.detector\.dlib-hog\.input_scale: Extra"):
        load_settings(overrides={"detect": {"detector": {"type": "dlib-hog", "input_scale": 1}}})
    with pytest.raises(ConfigError, match=r"detect\.detector\.opencv-people\.upsample: Extra"):
        load_settings(overrides={"detect": {"detector": {"type": "opencv-people", "upsample": 1}}})
    # without a type, the default detector's settings
    s = load_settings(overrides={"detect": {"detector": {"input_scale": 1.0}}})
    assert s.detect.detector == CenterFaceSettings(input_scale=1.0)


def test_the_detector_list_is_the_settings_union() -> None:
    assert list(DETECTORS) == ["centerface", "dlib-hog", "dlib-cnn", "opencv-people"]
    for name, settings in DETECTORS.items():
        assert settings.model_fields["type"].default == name
        assert DetectConfig.model_validate({"detector": {"type": name}}).detector.type == name


def test_flat_detector_keys_of_before_still_load(tmp_path: Path) -> None:
    """``model``, ``upsample``, ``input_scale`` and ``model_path`` right under ``detect``
    (configurations of before, the --model and --upsample flags) reach the detector."""
    old = tmp_path / "old.yaml"
    old.write_text("detect:\n  model: dlib-hog\n  upsample: 1\n  input_scale: 0.75\n")
    assert load_settings(old).detect.detector == DlibHogSettings(upsample=1)  # no input_scale
    old.write_text("detect:\n  model: centerface\n  input_scale: 0.75\n")
    assert load_settings(old).detect.detector == CenterFaceSettings(input_scale=0.75)


def test_flags_and_environment_beat_the_file_detector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("detect:\n  detector:\n    type: centerface\n    input_scale: 1.0\n")
    # --model naming another detector starts its settings afresh (the file's are not its)
    flag = load_settings(path, overrides={"detect": {"model": "dlib-cnn", "upsample": 1}})
    assert flag.detect.detector == DlibCnnSettings(upsample=1)
    # --upsample alone keeps the file's detector and its settings
    flag = load_settings(path, overrides={"detect": {"upsample": 2}})
    assert flag.detect.detector == CenterFaceSettings(input_scale=1.0, upsample=2)
    # an environment variable of one key changes that key, not the file's detector
    monkeypatch.setenv("SAURON_DETECT__DETECTOR__UPSAMPLE", "1")
    assert load_settings(path).detect.detector == CenterFaceSettings(input_scale=1.0, upsample=1)
    monkeypatch.setenv("SAURON_DETECT__TRACKING", "false")
    assert load_settings(path).detect.detector == CenterFaceSettings(input_scale=1.0, upsample=1)


def test_every_bad_key_is_listed() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(
            overrides={
                "match": {"tolerance": 0},
                "topics": {"partitions": 0},
                "bus": {"type": "rabbit"},
            }
        )
    text = str(info.value)
    assert text.startswith("invalid configuration:\n")
    for path in ("match.tolerance", "topics.partitions", "bus.type"):
        assert f"  {path}: " in text


# ----------------------------------------------------------------------------- YAML file


def test_yaml_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
cameras:
  - name: door
    source: rtsp://cam/door
    max_fps: 5
bus:
  type: kafka
  bootstrap_servers: broker:9092
  client: {security.protocol: SSL, retries: 3}
match:
  tolerance: 0.45
  watchlist: /srv/watchlist
""",
    )
    s = load_settings(path)
    assert [(c.name, c.source, c.max_fps) for c in s.cameras] == [("door", "rtsp://cam/door", 5)]
    assert s.bus.type == "kafka"
    assert s.bus.bootstrap_servers == "broker:9092"
    assert s.bus.client == {"security.protocol": "SSL", "retries": 3}
    assert s.match.tolerance == 0.45
    assert s.match.watchlist == Path("/srv/watchlist")
    assert s.match.draw is False  # untouched keys keep their defaults


def test_empty_yaml_file_gives_defaults(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, "")) == load_settings()


def test_yaml_unknown_key_names_its_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"topics\.partitons: Extra inputs"):
        load_settings(write(tmp_path, "topics:\n  partitons: 3\n"))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config file .*nope\.yaml"):
        load_settings(tmp_path / "nope.yaml")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path)


@pytest.mark.parametrize(
    "text", ["match: [unclosed", "a: b: c", "key: 'open quote\n", "\t- tab indented"]
)
def test_invalid_yaml(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_settings(write(tmp_path, text))


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string", "42"])
def test_yaml_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="must hold a mapping at the top level"):
        load_settings(write(tmp_path, text))


def test_binary_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "sauron.yaml"
    path.write_bytes(b"\xff\xfe\x00\x81 not text")
    with pytest.raises(ConfigError):
        load_settings(path)


# ----------------------------------------------------------------------------- precedence


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAURON_MATCH__TOLERANCE", "0.35")
    monkeypatch.setenv("SAURON_BUS__TYPE", "kafka")
    s = load_settings()
    assert s.match.tolerance == 0.35
    assert s.bus.type == "kafka"


def test_environment_beats_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "match:\n  tolerance: 0.5\n  draw: true\n")
    monkeypatch.setenv("SAURON_MATCH__TOLERANCE", "0.4")
    s = load_settings(path)
    assert s.match.tolerance == 0.4
    assert s.match.draw is True  # the file's sibling key survives the merge


def test_environment_equal_to_the_default_still_beats_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "match:\n  tolerance: 0.5\n")
    monkeypatch.setenv("SAURON_MATCH__TOLERANCE", "0.6")
    assert load_settings(path).match.tolerance == 0.6


def test_overrides_beat_environment_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "match:\n  tolerance: 0.5\n  draw: true\ntopics:\n  partitions: 3\n")
    monkeypatch.setenv("SAURON_MATCH__TOLERANCE", "0.4")
    monkeypatch.setenv("SAURON_TOPICS__PARTITIONS", "12")
    s = load_settings(path, overrides={"match": {"tolerance": 0.3}})
    assert s.match.tolerance == 0.3
    assert s.match.draw is True
    assert s.topics.partitions == 12


def test_invalid_environment_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAURON_MATCH__TOLERANCE", "-1")
    with pytest.raises(ConfigError, match=r"match\.tolerance: Input should be greater than 0"):
        load_settings()


def test_unknown_nested_environment_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAURON_MATCH__TOLERENCE", "0.4")
    with pytest.raises(ConfigError, match=r"match\.tolerence: Extra inputs are not permitted"):
        load_settings()


def test_sections_validate_on_their_own() -> None:
    assert MatchConfig(tolerance=0.2).tolerance == 0.2
    assert DetectConfig(detector={"type": "opencv-people"}).detector == OpenCVPeopleSettings()
    assert Settings().match == MatchConfig()


def test_the_example_config_loads_and_keeps_to_the_defaults_it_restates() -> None:
    """examples/sauron.yaml is what newcomers copy: it must load, and every section key
    it sets that is not a per-site choice (cameras, paths) must equal the default, so the
    example never steers a user away from the measured defaults."""
    import yaml

    path = Path(__file__).resolve().parents[1] / "examples" / "sauron.yaml"
    loaded = load_settings(path)
    raw = yaml.safe_load(path.read_text())
    defaults = Settings()
    site = {("match", "watchlist"), ("bus", "type")}
    compared = 0

    def plain(value: Any) -> Any:  # a sub-section as the mapping a file writes
        if isinstance(value, BaseModel):
            return value.model_dump()
        return str(value) if isinstance(value, Path) else value

    for section, values in raw.items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            got = plain(getattr(getattr(loaded, section), key))
            default = plain(getattr(getattr(defaults, section), key))
            if isinstance(value, dict):  # a sub-section: the keys the example sets
                got = {k: got[k] for k in value}
                default = {k: default[k] for k in value}
            assert got == value, f"{section}.{key}"
            if (section, key) not in site:
                assert default == value, f"{section}.{key}"
                compared += 1
    assert compared >= 10


def test_mqtt_settings_come_from_the_environment_like_every_section(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().mqtt.host is None, "no MQTT unless a broker is named"
    monkeypatch.setenv("SAURON_MQTT__HOST", "broker.lan")
    monkeypatch.setenv("SAURON_MQTT__PORT", "8883")
    monkeypatch.setenv("SAURON_MQTT__TLS", "true")
    monkeypatch.setenv("SAURON_MQTT__PASSWORD", "s3cret")
    s = load_settings()
    assert (s.mqtt.host, s.mqtt.port, s.mqtt.tls) == ("broker.lan", 8883, True)
    assert s.mqtt.password is not None and s.mqtt.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s.mqtt), "the password is not shown"
    assert s.mqtt.topic_prefix == "sauron" and s.mqtt.discovery_prefix == "homeassistant"


def test_an_mqtt_prefix_with_a_wildcard_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.topic_prefix"):
        load_settings(None, {"mqtt": {"host": "b", "topic_prefix": "site/#"}})


def test_alert_settings_of_before_move_into_the_alerts_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    old = write(tmp_path, "web:\n  alert_gap_s: 7\n  webhook_url: http://127.0.0.1:9/hook\n")
    settings = load_settings(old)
    assert (settings.alerts.gap_s, settings.alerts.webhook_url) == (7.0, "http://127.0.0.1:9/hook")
    assert "web.alert_gap_s is now alerts.gap_s" in caplog.text
    # the new place wins over the old one; the environment reaches the old place too
    both = write(tmp_path, "web:\n  alert_gap_s: 7\nalerts:\n  gap_s: 9\n")
    assert load_settings(both).alerts.gap_s == 9.0
    monkeypatch.setenv("SAURON_WEB__ALERT_GAP_S", "11")
    assert load_settings(None).alerts.gap_s == 11.0


def test_a_webhook_that_is_not_http_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"alerts\.webhook_url"):
        load_settings(None, {"alerts": {"webhook_url": "file:///etc/passwd"}})


def test_visitor_alerts_are_off_by_default_and_their_cameras_are_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = Settings().visitors
    assert (cfg.alert_cameras, cfg.alert_visits, cfg.alerts) == ([], 0, False)
    on = load_settings(None, {"visitors": {"alert_cameras": ["door", "gate-2", "door"]}})
    assert on.visitors.alert_cameras == ["door", "gate-2"] and on.visitors.alerts
    with pytest.raises(ConfigError, match=r"visitors\.alert_cameras: .*camera name 'front door'"):
        load_settings(None, {"visitors": {"alert_cameras": ["front door"]}})
    with pytest.raises(ConfigError, match=r"visitors\.alert_visits: Input should be"):
        load_settings(None, {"visitors": {"alert_visits": -1}})
    monkeypatch.setenv("SAURON_VISITORS__ALERT_CAMERAS", '["hall"]')
    monkeypatch.setenv("SAURON_VISITORS__ALERT_VISITS", "5")
    env = load_settings(None).visitors
    assert (env.alert_cameras, env.alert_visits) == (["hall"], 5)
