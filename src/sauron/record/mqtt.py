"""MQTT: appearances as events, cameras and people as retained state, and Home Assistant
discovery (docs/integrations.md).

With ``mqtt.host`` set, the record stage publishes, under ``<prefix>`` (``mqtt.topic_prefix``):

* ``<prefix>/status``: ``online``, or ``offline`` (the broker says so when we vanish);
* ``<prefix>/events``: one JSON event per appearance ``start``, ``update`` and ``end``,
  and one (``"type": "visitor"``, ``"phase": "return"``) per returning visitor's alert;
* retained, per camera (``<prefix>/camera/<id>/...``): ``availability`` (``online`` while
  frames arrive), ``last_person`` with its ``last_person/attributes`` (JSON) and
  ``snapshot`` (the annotated frame that started the latest appearance, a JPEG);
* retained, per watched person: ``<prefix>/person/<id>/present`` (``ON``/``OFF``);
* with ``mqtt.discovery``, retained configs under ``homeassistant/`` for each camera (a
  sensor "Last person seen", a camera "Latest snapshot") and each watched person (a
  binary sensor "Present").

The client (paho-mqtt) reconnects by itself, and on each connection publishes the retained
state again. Events wait in a queue of ``mqtt.queue_size`` while the broker is away and
are sent, oldest first, once it is back (at least once: an event whose acknowledgement
was lost is sent again); a full queue drops its oldest event and says so in the log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from sauron import __version__
from sauron.config import Settings
from sauron.imaging import ImageDecodeError
from sauron.match.appearances import Appearance, AppearanceSpan
from sauron.queues import Empty, LatestQueue, QueueClosed
from sauron.record.visitors import VisitorAlert
from sauron.store.snapshots import annotated_frame
from sauron.types import Result

log = logging.getLogger(__name__)

EVENT_SCHEMA_VERSION = 1
ONLINE, OFFLINE = "online", "offline"
SEND_TIMEOUT_S = 5.0
PEOPLE_EVERY_S = 5.0  # how often the watched people are read again (enrolled, deleted)


def topic_id(name: str) -> str:
    """``name`` as one topic level and a Home Assistant id (letters, digits, ``_``, ``-``);
    a name that had to change gets a short hash, so two names never share an id."""
    slug = re.sub(r"[^A-Za-z0-9_-]", "_", name)
    if slug == name and slug:
        return slug
    return f"{slug}_{hashlib.sha256(name.encode()).hexdigest()[:6]}"


class MqttPublisher:
    """The record stage's :class:`~sauron.record.recorder.AppearanceWatcher` that speaks MQTT."""

    def __init__(
        self,
        settings: Settings,
        *,
        people: Callable[[], list[str]] = list,
        tick_s: float = 1.0,
    ) -> None:
        cfg = settings.mqtt
        if cfg.host is None:
            raise ValueError("mqtt.host is not set")
        self.cfg = cfg
        self.prefix = cfg.topic_prefix.rstrip("/")
        self.people = people  # the watched people's names (read now and then)
        self.gap_s = settings.alerts.gap_s
        self.clips = settings.clips.enabled
        self.stale_after_s = settings.web.stale_after_s
        self.privacy_blur = settings.web.privacy_blur
        self.tick_s = tick_s
        self.sent = 0
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._events: LatestQueue[tuple[str, bytes]] = LatestQueue(cfg.queue_size)
        self._retained: dict[str, bytes] = {}  # topic -> the state to publish on connect
        self._cameras: dict[str, float | None] = {c.name: None for c in settings.cameras}
        self._newest: dict[str, float] = {}  # camera -> its newest frame's capture time
        self._online: dict[str, bool] = {}
        self._open: dict[tuple[str, str], tuple[AppearanceSpan, int | None]] = {}
        self._people: set[str] = set()  # the people whose discovery config is published
        self._connected = threading.Event()
        self._stop = threading.Event()  # the clock stops
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id or f"sauron-record-{uuid.uuid4().hex[:12]}",
            protocol=paho.MQTTv311,
        )
        if cfg.username is not None:
            pw = cfg.password.get_secret_value() if cfg.password is not None else None
            self.client.username_pw_set(cfg.username, pw)
        if cfg.tls:
            self.client.tls_set(
                ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        self.client.will_set(self.topic("status"), OFFLINE, qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self._sender = threading.Thread(target=self._send_events, name="mqtt-send", daemon=True)
        self._ticker = threading.Thread(target=self._tick, name="mqtt-state", daemon=True)

    def topic(self, *levels: str) -> str:
        return "/".join((self.prefix, *levels))

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def state(self) -> str:
        """``alive`` (connected), ``reconnecting`` (the broker is away) or ``dead`` (a
        thread of this publisher died)."""
        if not (self._sender.is_alive() and self._ticker.is_alive()):
            return "dead"
        return "alive" if self.connected else "reconnecting"

    @property
    def queued(self) -> int:
        return len(self._events)

    @property
    def dropped(self) -> int:
        """Events dropped from a full queue (or refused once stopping)."""
        return self._events.dropped

    def start(self) -> MqttPublisher:
        self.client.connect_async(self.cfg.host or "", self.cfg.port, self.cfg.keepalive_s)
        self.client.loop_start()
        self._sender.start()
        self._ticker.start()
        log.info("mqtt: publishing to %s:%d under %s/", self.cfg.host, self.cfg.port, self.prefix)
        return self

    # -- what the recorder tells ------------------------------------------------------

    def frame(self, result: Result) -> None:
        camera = result.frame.camera
        with self._lock:
            new = camera not in self._cameras
            self._cameras[camera] = time.monotonic()
            self._newest[camera] = max(self._newest.get(camera, 0.0), result.frame.captured_at)
        if new:
            self._announce_camera(camera)

    def started(self, app: Appearance, result: Result) -> None:
        span = app.span
        with self._lock:
            present = any(p == span.person for _, p in self._open)
            self._open[(span.camera, span.person)] = (span, app.alert_id)
        self._event("start", span, app.alert_id)
        cam = topic_id(span.camera)
        self._state(self.topic("camera", cam, "last_person"), span.person)
        self._state(
            self.topic("camera", cam, "last_person", "attributes"),
            json.dumps(self._describe(span, app.alert_id)),
        )
        if not present:
            self._state(self.topic("person", topic_id(span.person), "present"), "ON")
        try:
            jpeg = annotated_frame(result, privacy_blur=self.privacy_blur)
        except ImageDecodeError as exc:
            log.warning("mqtt: camera %s: no snapshot: %s", span.camera, exc)
        else:
            self._state(self.topic("camera", cam, "snapshot"), jpeg)

    def updated(self, app: Appearance) -> None:
        span = app.span
        with self._lock:
            present = any(p == span.person for _, p in self._open)
            self._open[(span.camera, span.person)] = (span, app.alert_id)
        self._event("update", span, app.alert_id)
        if not present:  # ended here while the recorder was behind the frames: back again
            self._state(self.topic("person", topic_id(span.person), "present"), "ON")

    def visitor_alert(self, alert: VisitorAlert, alert_id: int) -> None:
        """A returning visitor's alert: an event only (the retained state is the
        watched people's)."""
        event = {"v": EVENT_SCHEMA_VERSION, "type": "visitor", "phase": "return"}
        self._put_event(
            {
                **event,
                "person": alert.label,
                "visitor_id": alert.visitor_id,
                "camera": alert.camera,
                "alert_id": alert_id,
                "started_at": alert.started_at,
                "last_seen_at": alert.ended_at,
                "frames": alert.frames,
                "distance": round(float(alert.distance), 4),
                "visits": alert.visits,
                "reasons": list(alert.reasons),
                "snapshot_url": self._url(alert_id, "snapshot.jpg"),
            }
        )

    # -- publishing -------------------------------------------------------------------

    def _url(self, alert_id: int | None, name: str) -> str | None:
        if alert_id is None:
            return None
        return (self.cfg.base_url or "").rstrip("/") + f"/api/alerts/{alert_id}/{name}"

    def _describe(self, span: AppearanceSpan, alert_id: int | None) -> dict[str, Any]:
        return {
            "person": span.person,
            "camera": span.camera,
            "alert_id": alert_id,
            "started_at": span.started_at,
            "last_seen_at": span.last_seen_at,
            "frames": span.frames,
            "distance": round(float(span.distance), 4),
            "snapshot_url": self._url(alert_id, "snapshot.jpg"),
            "clip_url": self._url(alert_id, "clip.mp4") if self.clips else None,
        }

    def _event(self, phase: str, span: AppearanceSpan, alert_id: int | None) -> None:
        event = {"v": EVENT_SCHEMA_VERSION, "type": "appearance", "phase": phase}
        self._put_event({**event, **self._describe(span, alert_id)})

    def _put_event(self, event: dict[str, Any]) -> None:
        payload = json.dumps(event).encode()
        item = (self.topic("events"), payload)
        for old in self._events.put(item):
            text = old[1][:120].decode("utf-8", "replace")
            if old is item:  # stopped: nothing is sent any more
                log.warning("mqtt: stopped, event not sent: %s", text)
                continue
            log.warning(
                "mqtt: %d events wait for the broker (mqtt.queue_size): dropped the oldest, "
                "%s (%d dropped so far)",
                self._events.maxsize,
                text,
                self.dropped,
            )

    def _state(self, topic: str, payload: str | bytes) -> None:
        """Retained state: kept here and published now if connected, else on connect."""
        data = payload.encode() if isinstance(payload, str) else payload
        with self._lock:
            self._retained[topic] = data
        if self.connected:
            self.client.publish(topic, data, qos=1, retain=True)

    def _send_events(self) -> None:
        while True:
            try:
                item = self._events.peek(timeout=0.5)
            except Empty:
                continue
            except QueueClosed:
                return
            with self._wake:  # woken on connecting and on stopping
                self._wake.wait_for(lambda: self.connected or self._events.closed, 0.5)
            if not self.connected:  # published only while connected: no copy in paho's queue
                if self._events.closed:
                    return
                continue
            if self._publish_acked(*item):
                self._events.discard(item)  # unless a full queue dropped it meanwhile
                self.sent += 1
            else:
                self._connected.wait(1.0)  # the broker went away: wait for the next session

    def _publish_acked(self, topic: str, payload: bytes) -> bool:
        try:
            info = self.client.publish(topic, payload, qos=1)
            info.wait_for_publish(SEND_TIMEOUT_S)
        except (RuntimeError, ValueError) as exc:  # not connected (any more)
            log.debug("mqtt: event not sent yet: %s", exc)
            return False
        return info.is_published()

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning(
                "mqtt: %s:%d refused the connection: %s", self.cfg.host, self.cfg.port, reason
            )
            return
        log.info("mqtt: connected to %s:%d", self.cfg.host, self.cfg.port)
        client.publish(self.topic("status"), ONLINE, qos=1, retain=True)
        with self._lock:
            self._people.clear()
            cameras = list(self._cameras)
        for camera in cameras:
            self._announce_camera(camera, client)
        self._announce_people(client)
        with self._lock:
            retained = list(self._retained.items())
        for topic, data in retained:
            client.publish(topic, data, qos=1, retain=True)
        self._connected.set()
        with self._wake:
            self._wake.notify_all()

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
        was = self.connected
        self._connected.clear()
        if was and not self._stop.is_set():
            log.warning(
                "mqtt: lost the broker %s:%d (%s); reconnecting, events wait (%d queued)",
                self.cfg.host, self.cfg.port, reason, self.queued,
            )  # fmt: skip

    # -- Home Assistant discovery ------------------------------------------------------

    def _availability(self, *topics: str) -> dict[str, Any]:
        return {
            "availability": [{"topic": t} for t in (self.topic("status"), *topics)],
            "availability_mode": "all",
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
        }

    def camera_configs(self, camera: str) -> dict[str, dict[str, Any]]:
        """Discovery topic -> config, for one camera's two entities."""
        cam = topic_id(camera)
        device = {
            "identifiers": [f"sauron_camera_{cam}"],
            "name": f"Sauron {camera}",
            "manufacturer": "Sauron",
            "model": "Camera",
            "sw_version": __version__,
        }
        base = {"device": device, **self._availability(self.topic("camera", cam, "availability"))}
        d = self.cfg.discovery_prefix
        return {
            f"{d}/sensor/sauron_{cam}/last_person/config": {
                **base,
                "name": "Last person seen",
                "unique_id": f"sauron_{cam}_last_person",
                "state_topic": self.topic("camera", cam, "last_person"),
                "json_attributes_topic": self.topic("camera", cam, "last_person", "attributes"),
                "icon": "mdi:face-recognition",
            },
            f"{d}/camera/sauron_{cam}/snapshot/config": {
                **base,
                "name": "Latest snapshot",
                "unique_id": f"sauron_{cam}_snapshot",
                "topic": self.topic("camera", cam, "snapshot"),
            },
        }

    def person_config(self, person: str) -> tuple[str, dict[str, Any]]:
        pid = topic_id(person)
        return f"{self.cfg.discovery_prefix}/binary_sensor/sauron_person_{pid}/present/config", {
            "name": "Present",
            "unique_id": f"sauron_person_{pid}_present",
            "state_topic": self.topic("person", pid, "present"),
            "payload_on": "ON",
            "payload_off": "OFF",
            "device_class": "presence",
            "device": {
                "identifiers": [f"sauron_person_{pid}"],
                "name": person,
                "manufacturer": "Sauron",
                "model": "Watched person",
                "sw_version": __version__,
            },
            **self._availability(),
        }

    def _announce_camera(self, camera: str, client: Any = None) -> None:
        if not self.cfg.discovery:
            return
        client = client or (self.client if self.connected else None)
        if client is None:
            return  # announced on connect
        for topic, config in self.camera_configs(camera).items():
            client.publish(topic, json.dumps(config), qos=1, retain=True)

    def _announce_people(self, client: Any) -> None:
        if not self.cfg.discovery:
            return
        try:
            people = set(self.people())
        except Exception:  # the store briefly away: next tick
            log.exception("mqtt: the watched people could not be read")
            return
        with self._lock:
            known = set(self._people)
        for person in sorted(people - known):
            topic, config = self.person_config(person)
            client.publish(topic, json.dumps(config), qos=1, retain=True)
            self._state(self.topic("person", topic_id(person), "present"), self._present(person))
        for person in sorted(known - people):  # no longer watched: Home Assistant drops it
            topic, _ = self.person_config(person)
            client.publish(topic, b"", qos=1, retain=True)
        with self._lock:
            self._people = people

    def people_changed(self) -> None:
        """Announce the watched people now (not at the next reading)."""
        if self.connected:
            try:
                self._announce_people(self.client)
            except Exception:  # the next tick tries again
                log.exception("mqtt: the watched people could not be announced")

    def _present(self, person: str) -> str:
        with self._lock:
            return "ON" if any(p == person for _, p in self._open) else "OFF"

    # -- the clock: appearances that ended, cameras that went quiet, people added --------
    # An appearance ends as the record stage's appearances do, by capture time: once its
    # camera shows a frame more than alerts.gap_s after it was last seen; or when its
    # camera went quiet (no frame for web.stale_after_s); or at the stop.

    def _tick(self) -> None:
        people_at = time.monotonic()
        while not self._stop.wait(self.tick_s):
            try:
                self._end_quiet_appearances()
                self._camera_availability()
                if self.connected and time.monotonic() - people_at >= PEOPLE_EVERY_S:
                    people_at = time.monotonic()
                    self._announce_people(self.client)
            except Exception:
                log.exception("mqtt: state update failed")

    def _ended(self, camera: str, span: AppearanceSpan, now: float) -> bool:
        seen = self._cameras.get(camera)
        quiet = seen is None or now - seen >= self.stale_after_s
        return quiet or self._newest.get(camera, 0.0) - span.last_seen_at > self.gap_s

    def _end_quiet_appearances(self, everything: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            ended = [
                (k, v) for k, v in self._open.items() if everything or self._ended(k[0], v[0], now)
            ]
            for k, _ in ended:
                del self._open[k]
            still = {p for _, p in self._open}
        for (_camera, person), (span, alert_id) in ended:
            self._event("end", span, alert_id)
            if person not in still:
                self._state(self.topic("person", topic_id(person), "present"), "OFF")

    def _camera_availability(self) -> None:
        now = time.monotonic()
        with self._lock:
            states = {
                c: last is not None and now - last < self.stale_after_s
                for c, last in self._cameras.items()
            }
            changed = {c: s for c, s in states.items() if self._online.get(c) != s}
            self._online.update(changed)
        for camera, online in changed.items():
            topic = self.topic("camera", topic_id(camera), "availability")
            self._state(topic, ONLINE if online else OFFLINE)

    def stop(self, timeout: float = 10.0) -> None:
        """End the open appearances, send what is queued (while the broker answers, at most
        ``timeout`` s), say ``offline`` and disconnect."""
        self._stop.set()
        if self._ticker.is_alive():
            self._ticker.join(timeout)
        self._end_quiet_appearances(everything=True)
        self._events.close()
        with self._wake:
            self._wake.notify_all()
        if self._sender.is_alive():
            self._sender.join(timeout)
        if self.queued:
            log.warning("mqtt: %d events not sent: the broker was unreachable", self.queued)
        with self._lock:
            last = [self.topic("camera", topic_id(c), "availability") for c in self._cameras]
        last.append(self.topic("status"))
        if self.connected:
            infos = [self.client.publish(t, OFFLINE, qos=1, retain=True) for t in last]
            for info in infos:
                try:
                    info.wait_for_publish(SEND_TIMEOUT_S)
                except (RuntimeError, ValueError):  # the broker went away meanwhile
                    break
        self.client.disconnect()
        self.client.loop_stop()
