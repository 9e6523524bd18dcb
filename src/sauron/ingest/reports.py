"""Camera reports: an ingest process tells the deployment which cameras it reads and how
they are, so that a web server elsewhere (``sauron web --bootstrap``) lists them with their
health without being told the cameras in its own settings.

Every ``interval_s`` (and once more when the ingest stops) each camera's
:class:`~sauron.codec.CameraReport` goes to ``<prefix>.cameras``, a compacted topic keyed
by the camera, so a reader that starts later reads the newest report of every camera.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

from sauron import codec
from sauron.bus.client import make_producer
from sauron.config import Settings
from sauron.ingest.producer import IngestGroup

log = logging.getLogger(__name__)

#: seconds between two reports of a camera; a reader treats a camera as unreported after
#: a few of these without one
REPORT_INTERVAL_S = 2.0


def reports_topic(settings: Settings) -> str:
    return settings.topics.name("cameras")


def camera_reports(group: IngestGroup, host: str) -> list[codec.CameraReport]:
    now = time.time()
    return [
        codec.CameraReport(
            camera=name,
            state=st.state,
            frames=st.frames,
            ts=now,
            error=st.error,
            restarts=st.restarts,
            host=host,
        )
        for name, st in sorted(group.status.items())
    ]


class CameraReporter(threading.Thread):
    """Publishes the reports of ``group``'s cameras until :meth:`stop`."""

    def __init__(
        self, settings: Settings, group: IngestGroup, interval_s: float = REPORT_INTERVAL_S
    ) -> None:
        super().__init__(name="camera-reports", daemon=True)
        self.topic = reports_topic(settings)
        self.group = group
        self.interval_s = interval_s
        self.host = socket.gethostname()
        self.producer = make_producer(settings.bus)
        self._quit = threading.Event()

    def _publish(self) -> None:
        for report in camera_reports(self.group, self.host):
            self.producer.produce(
                self.topic, key=report.camera.encode(), value=codec.encode_camera_report(report)
            )
        self.producer.poll(0)

    def run(self) -> None:
        while True:
            try:
                self._publish()
            except Exception:  # a full queue or a broker away: the next report catches up
                log.exception("camera reports: not published this time")
            if self._quit.wait(self.interval_s):
                return

    def stop(self, timeout: float = 5.0) -> None:
        """Stop, after one last report (the cameras' final states)."""
        self._quit.set()
        self.join(timeout)
        try:
            self._publish()
        except Exception:
            log.exception("camera reports: the last one was not published")
        self.producer.flush(timeout)
