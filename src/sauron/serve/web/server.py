"""Putting the web app together from settings, and running it in a thread.

:class:`WebServices` owns what lives beside the app: the store it reads, the search index
(kept in step with the store by a thread), and over Kafka the live tails and the alert
feed. It records nothing: the record stage (``sauron.record``) stores sightings and
alerts, inside ``sauron run`` or as ``sauron worker record``. ``sauron run`` hands the
pipeline's results to :meth:`WebServices.on_result` (the live views), its watchlist to
:meth:`WebServices.attach_watchlist` and its record stage to
:meth:`WebServices.attach_record`; ``sauron web`` alone reads Kafka.
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
from sauron.serve.alerts import Broadcaster
from sauron.serve.web.app import create_app
from sauron.serve.web.context import WebContext
from sauron.serve.web.enrollment import Enroller, WatchlistSync, import_watchlist_dir
from sauron.serve.web.live import LiveHub
from sauron.store.accounts import Accounts
from sauron.store.db import Store, private_dir
from sauron.store.index import FaceIndex
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
        self.app = create_app(self.ctx)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._kafka: list[Any] = []
        self.pipeline = pipeline
        self._pipeline_parts: Callable[[], dict[str, str]] | None = None
        self._record_parts: Callable[[], dict[str, str]] | None = None
        self.ctx.health = self.parts

    def bootstrap_admin(self) -> str | None:
        """Create the first admin if there is no account; the generated password or None."""
        pw = self.settings.web.admin_password
        return self.ctx.accounts.bootstrap_admin(
            self.settings.web.admin_user, pw.get_secret_value() if pw else None
        )

    def start(self) -> WebServices:
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
        """Keep the search index and the running watchlists in step with the store (the
        record stage's retention deletes old sightings: the index forgets them)."""
        while not self._stop.wait(2.0):
            try:
                self.ctx.sync_index()
                self.ctx.forget_purged()
                self.ctx.watchlists.reconcile()
                self.ctx.failures.flush()
            except Exception:  # database briefly away: try again on the next tick
                log.exception("web: index/watchlist sync failed")

    def _start_kafka(self) -> None:
        from sauron.bus.admin import ensure_topics
        from sauron.serve.web.kafka_feed import AlertFeed, CameraReportFeed, KafkaLiveFeed

        ensure_topics(self.settings)
        self.ctx.watchlists.publish_all()
        self._kafka.append(AlertFeed(self.settings, self.broadcaster).start())
        self._kafka.append(CameraReportFeed(self.settings, self.hub).start())
        if self.pipeline:  # `sauron run` hands over every annotated frame already
            return
        live = KafkaLiveFeed(self.settings, self.hub)
        self.app.state.kafka_feed = live
        self._kafka.append(live)

    def parts(self) -> dict[str, str]:
        """Each long-running part and its state (``alive``/``dead`` for threads; cameras
        and detect processes as the pipeline reports them)."""
        index = any(t.name == "web-maintain" and t.is_alive() for t in self._threads)
        out = {"index": "alive" if index else "dead"}
        if self._record_parts is not None:
            out.update(self._record_parts())
        if self._pipeline_parts is not None:
            out.update(self._pipeline_parts())
        return out

    def attach_parts(self, parts: Callable[[], dict[str, str]]) -> None:
        """``sauron run`` hands over the states of its cameras and detect processes."""
        self._pipeline_parts = parts
        self.hub.source_states = parts

    def attach_record(self, record: Any) -> None:
        """``sauron run``'s record stage (a :class:`sauron.record.stage.RecordStage`): its
        parts join /api/health and, with the embedded bus, its alerts reach the pages."""
        self._record_parts = record.parts
        if self.settings.bus.type != "kafka":  # over Kafka: AlertFeed reads the topic
            record.subscribe(self.broadcaster.publish)

    def on_result(self, result: Result) -> None:
        """The pipeline's ``on_result`` callback: the live views."""
        self.hub.add(result)

    def attach_watchlist(self, watchlist: Watchlist) -> None:
        self.ctx.watchlists.attach(watchlist)

    def stop(self) -> None:
        self._stop.set()
        for k in self._kafka:
            k.stop()
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
