"""Putting the web app together from settings, and running it in a thread.

:class:`WebServices` owns what lives beside the app: the store, the search index (kept in
step with the store by a thread), the recorder that stores sightings and raises alerts,
the retention thread, and over Kafka the live tails and the alert feed.
``sauron run`` hands the pipeline's results to :meth:`WebServices.on_result` and its
watchlist to :meth:`WebServices.attach_watchlist`; ``sauron web`` alone reads Kafka.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn

from sauron.config import Settings
from sauron.match.watchlist import Watchlist
from sauron.serve.alerts import AlertDispatcher, Broadcaster, Webhook, kafka_alert_sink
from sauron.serve.web.app import create_app
from sauron.serve.web.context import WebContext
from sauron.serve.web.enrollment import Enroller, WatchlistSync, import_watchlist_dir
from sauron.serve.web.live import LiveHub
from sauron.store.accounts import Accounts
from sauron.store.db import Store, private_dir
from sauron.store.index import FaceIndex
from sauron.store.recorder import Recorder
from sauron.store.retention import RetentionWorker
from sauron.types import Result

log = logging.getLogger(__name__)


class WebServices:
    def __init__(
        self, settings: Settings, *, store: Store | None = None, pipeline: bool = True
    ) -> None:
        """``pipeline``: results arrive through :meth:`on_result` (``sauron run``);
        otherwise, over Kafka, this server reads the annotated topic itself."""
        self.settings = settings
        web = settings.web
        self.store = store or Store.open(settings.store)
        private_dir(settings.store.data_dir)  # the search index holds every embedding
        index_dir = (
            settings.store.data_dir
            / "index"
            / hashlib.sha256(self.store.safe_url.encode()).hexdigest()[:12]
        )
        self.index = FaceIndex(index_dir)
        self.broadcaster = Broadcaster()
        kafka = settings.bus.type == "kafka"
        webhook = Webhook(web.webhook_url) if web.webhook_url else None
        self.dispatcher = AlertDispatcher(
            self.broadcaster, webhook=webhook, kafka=kafka_alert_sink(settings) if kafka else None
        )
        self.hub = LiveHub(
            privacy_blur=web.privacy_blur,
            stale_after_s=web.stale_after_s,
            quality=settings.match.annotated_quality,
        )
        for cam in settings.cameras:
            self.hub.register(cam.name)
        self.ctx = WebContext(
            settings=settings,
            store=self.store,
            accounts=Accounts(
                self.store,
                hash_slots=web.password_hash_slots,
                max_token_s=web.max_token_days * 86400,
            ),
            index=self.index,
            hub=self.hub,
            broadcaster=self.broadcaster,
            enroller=Enroller(settings, int(web.max_photo_mb * 1024 * 1024)),
            watchlists=WatchlistSync(settings, self.store),
        )
        self.recorder = Recorder(
            self.store,
            settings.store,
            dispatcher=self.dispatcher,
            alert_gap_s=web.alert_gap_s,
            privacy_blur=web.privacy_blur,
        )
        self.retention = RetentionWorker(
            self.store, settings.store.retention_days, settings.store.retention_check_s, self.index
        )
        self.app = create_app(self.ctx)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._kafka: list[Any] = []
        self.pipeline = pipeline
        self._pipeline_parts: Callable[[], dict[str, str]] | None = None
        self.ctx.health = self.parts

    def bootstrap_admin(self) -> str | None:
        """Create the first admin if there is no account; the generated password or None."""
        pw = self.settings.web.admin_password
        return self.ctx.accounts.bootstrap_admin(
            self.settings.web.admin_user, pw.get_secret_value() if pw else None
        )

    def start(self) -> WebServices:
        if self.dispatcher.webhook is not None:
            self.dispatcher.webhook.start()
        self.recorder.start()
        self.retention.start()
        self._spawn(self._maintain, "web-maintain")
        if self.settings.match.watchlist is not None:
            self._spawn(self._import_folder, "watchlist-import")
        if self.settings.bus.type == "kafka":
            self._start_kafka()
        return self

    def _spawn(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _import_folder(self) -> None:
        folder = self.settings.match.watchlist
        if folder is None or not folder.is_dir():
            return
        try:
            added = import_watchlist_dir(self.store, self.ctx.enroller, folder)
        except Exception:
            log.exception("watchlist folder %s not imported into the store", folder)
            return
        if added:
            log.info("watchlist: imported %s from %s into the store", ", ".join(added), folder)
            self.ctx.watchlists.publish_all()

    def _maintain(self) -> None:
        """Keep the search index and the running watchlists in step with the store, and
        restart the recorder or the retention thread if one died."""
        while not self._stop.wait(2.0):
            self._watch()
            try:
                self.ctx.sync_index()
                self.ctx.watchlists.reconcile()
                self.ctx.failures.flush()
            except Exception:  # database briefly away: try again on the next tick
                log.exception("web: index/watchlist sync failed")

    def _start_kafka(self) -> None:
        from sauron.bus.admin import ensure_topics
        from sauron.serve.web.kafka_feed import AlertFeed, KafkaLiveFeed, KafkaRecorderFeed

        ensure_topics(self.settings)
        self.ctx.watchlists.publish_all()
        self._kafka.append(AlertFeed(self.settings, self.broadcaster).start())
        if self.pipeline:  # `sauron run` hands over every annotated frame already
            return
        live = KafkaLiveFeed(self.settings, self.hub)
        self.app.state.kafka_feed = live
        self._kafka.append(live)
        self._kafka.append(KafkaRecorderFeed(self.settings, self.recorder).start())

    def _watch(self) -> None:
        if not self.recorder.alive:
            log.error("web: the recorder thread died; restarting it")
            self.recorder.restart()
        if not self.retention.is_alive():
            log.error("web: the retention thread died; restarting it")
            old = self.retention
            self.retention = RetentionWorker(old.store, old.retention_days, old.every_s, old.index)
            self.retention.start()

    def parts(self) -> dict[str, str]:
        """Each long-running part and its state (``alive``/``dead`` for threads; cameras
        and detect processes as the pipeline reports them)."""
        threads = {
            "recorder": self.recorder.alive,
            "retention": self.retention.is_alive(),
            "index": any(t.name == "web-maintain" and t.is_alive() for t in self._threads),
        }
        out = {k: "alive" if v else "dead" for k, v in threads.items()}
        if self._pipeline_parts is not None:
            out.update(self._pipeline_parts())
        return out

    def attach_parts(self, parts: Callable[[], dict[str, str]]) -> None:
        """``sauron run`` hands over the states of its cameras and detect processes."""
        self._pipeline_parts = parts
        self.hub.source_states = parts

    def on_result(self, result: Result) -> None:
        """The pipeline's ``on_result`` callback: live view and recorder."""
        self.hub.add(result)
        self.recorder.add(result)

    def attach_watchlist(self, watchlist: Watchlist) -> None:
        self.ctx.watchlists.attach(watchlist)

    def stop(self) -> None:
        self._stop.set()
        for k in self._kafka:
            k.stop()
        self.recorder.close()
        self.retention.stop()
        self.dispatcher.close()
        for t in self._threads:
            t.join(5)
        self.ctx.hash_gate.close()
        self.ctx.decode_gate.close()
        try:
            self.ctx.failures.flush(force=True)
        except Exception:  # the database is gone: the counts are lost, the server stops
            log.warning("web: the last failed log-ins could not be written to the audit log")
        self.store.close()


class WebServer:
    """Uvicorn serving an app from a background thread on an already bound socket."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = host, self.sock.getsockname()[1]
        # proxy_headers off: only web.trusted_proxies may name the client (create_app)
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=2,
            access_log=False,
            proxy_headers=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="web-server", daemon=True
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 20.0) -> WebServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the web server did not start on {self.url}")
            time.sleep(0.02)
        log.info("web server listening on %s", self.url)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
