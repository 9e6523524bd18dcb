"""The record stage put together from settings: store, recorder, alert delivery and
retention, with a thread that restarts a part that died."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from sauron.config import Settings
from sauron.match.watchlist import Watchlist
from sauron.record.alerts import AlertDispatcher, Sink, kafka_alert_sink, webhook_from
from sauron.record.clips import ClipRecorder
from sauron.record.recorder import Done, Recorder
from sauron.record.visitors import VisitorGrouper
from sauron.store.db import Store
from sauron.store.retention import RetentionPolicy, RetentionWorker
from sauron.store.visitors import VisitorStore
from sauron.types import Result

if TYPE_CHECKING:
    from sauron.record.mqtt import MqttPublisher

log = logging.getLogger(__name__)


class RecordStage:
    """Feed it every processed frame (:meth:`on_result`); it stores and alerts."""

    def __init__(self, settings: Settings, *, store: Store | None = None) -> None:
        self.settings = settings
        web = settings.web
        self.store = store or Store.open(settings.store)
        self._own_store = store is None
        kafka = settings.bus.type == "kafka"
        self.watchlist: Watchlist | None = None
        self.mqtt: MqttPublisher | None = None
        if settings.mqtt.host is not None:
            from sauron.record.mqtt import MqttPublisher

            self.mqtt = MqttPublisher(settings, people=self.people)
        self.dispatcher = AlertDispatcher(
            webhook=webhook_from(settings.alerts),
            kafka=kafka_alert_sink(settings) if kafka else None,
        )
        self.recorder = Recorder(
            self.store,
            settings.store,
            dispatcher=self.dispatcher,
            alert_gap_s=settings.alerts.gap_s,
            privacy_blur=web.privacy_blur,
            watcher=self.mqtt,
            visitors=(
                VisitorGrouper(
                    VisitorStore(self.store), settings.visitors, settings.match.tolerance
                )
                if settings.visitors.enabled
                else None
            ),
        )
        self.clips: ClipRecorder | None = None
        if settings.clips.enabled:
            self.clips = ClipRecorder(
                self.store,
                settings.clips,
                gap_s=settings.alerts.gap_s,
                privacy_blur=web.privacy_blur,
            )
        self.retention = self._retention()
        self._stop = threading.Event()
        self._maintainer = threading.Thread(target=self._maintain, name="record", daemon=True)

    def _retention(self) -> RetentionWorker:
        cfg, clips = self.settings.store, self.settings.clips
        policy = RetentionPolicy.from_gb(
            cfg.retention_days,
            cfg.media_budget_gb,
            clips.alert_retention_days,
            clips.sighting_retention_days,
        )
        return RetentionWorker(self.store, policy, cfg.retention_check_s)

    def start(self) -> RecordStage:
        if self.mqtt is not None:
            self.mqtt.start()
        if self.dispatcher.webhook is not None:
            self.dispatcher.webhook.start()
        self.recorder.start()
        if self.clips is not None:
            self.clips.start()
        self.retention.start()
        self._maintainer.start()
        log.info("record: storing sightings and alerts in %s", self.store.safe_url)
        return self

    def on_result(self, result: Result) -> None:
        """The pipeline's ``on_result`` callback."""
        self.add(result)

    def add(self, result: Result, on_done: Done | None = None) -> None:
        """Hand a frame to the clips and the recorder (``on_done``: see
        :meth:`Recorder.add`; the Kafka feed commits the frame's offset then)."""
        if self.clips is not None:
            self.clips.add(result)
        self.recorder.add(result, on_done)

    def subscribe(self, sink: Sink) -> None:
        """Hand every new alert to ``sink`` too (the web app's pages, embedded bus)."""
        self.dispatcher.subscribe(sink)

    def attach_watchlist(self, watchlist: Watchlist) -> None:
        """The people watched (MQTT announces a "present" sensor for each)."""
        self.watchlist = watchlist
        if self.mqtt is not None:
            self.mqtt.people_changed()

    def people(self) -> list[str]:
        """The watched people's names: the running watchlist's, else the store's."""
        if self.watchlist is not None:
            return self.watchlist.names
        return [p.name for p in self.store.list_people()]

    def _maintain(self) -> None:
        while not self._stop.wait(2.0):
            if not self.recorder.alive:
                log.error("record: the recorder thread died; restarting it")
                self.recorder.restart()
            if self.clips is not None and self.clips.enabled and not self.clips.alive:
                log.error("record: the clips thread died; restarting it")
                self.clips.restart()
            if not self.retention.is_alive():
                log.error("record: the retention thread died; restarting it")
                self.retention = self._retention()
                self.retention.start()

    def parts(self) -> dict[str, str]:
        """Each of its threads, ``alive`` or ``dead``, and MQTT's connection (``alive``,
        ``reconnecting``: the broker is away, or ``dead``) for the web app's /api/health."""
        alive = {"recorder": self.recorder.alive, "retention": self.retention.is_alive()}
        if self.clips is not None and self.clips.enabled:
            alive["clips"] = self.clips.alive
        out = {k: "alive" if v else "dead" for k, v in alive.items()}
        if self.mqtt is not None:
            out["mqtt"] = self.mqtt.state
        return out

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every frame handed over is stored (clips still open stay open)."""
        done = self.recorder.flush(timeout)
        return (self.clips.flush(timeout) if self.clips is not None else True) and done

    def stop(self) -> None:
        self._stop.set()
        self.recorder.close()
        if self.clips is not None:
            self.clips.close()
        self.retention.stop()
        self.dispatcher.close()
        if self.mqtt is not None:
            self.mqtt.stop()
        if self._maintainer.is_alive():
            self._maintainer.join(5)
        if self._own_store:
            self.store.close()
