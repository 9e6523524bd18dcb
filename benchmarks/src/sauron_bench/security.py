"""``sauron bench security``: the web app under a flood of failed log-ins and uploads.

    sauron bench security [--seconds 20] [--logins 32] [--uploads 4] [--out DIR]
                          [--server-src DIR] [--baseline-src DIR]

Starts ``sauron web`` (a process of its own, SQLite in a temporary folder, loopback only),
warms it up (log-in, a search by photo, so the face models are loaded), then measures:

* idle: the server's resident memory (RSS) and ``/api/health`` latency for a few seconds;
* flood, for ``--seconds``: ``--logins`` threads sending failed log-ins (made-up user
  names and wrong admin passwords) from a pool of loopback addresses (127.0.4.x, so the
  per-address limit does not simply refuse them all), and ``--uploads`` threads sending
  searches by photo as a viewer: in turn the 47 kB PNG of 7000x7000 pixels of the review,
  and a face photo scaled to just under the megapixel limit (made unique per request, so
  no cache helps); meanwhile ``/api/health`` is asked 20 times a second.

It prints the figures (idle and peak RSS, their ratio, health p50/p99 idle and during
the flood, the answers by status) and writes ``security.json`` into ``--out``. The
targets: peak RSS under 1.5x idle, health p99 under 100 ms during the flood.
``--server-src`` runs the server from another source tree; ``--baseline-src`` floods a
second server, run from another tree (e.g. an older checkout's ``src``), the same way
right after, and reports both. Every request goes to 127.0.0.0/8; every loop ends by
itself.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from PIL import Image

ADMIN = "admin"
HEALTH_EVERY_S = 0.05
RSS_EVERY_S = 0.05
TARGET_RSS_RATIO = 1.5
TARGET_HEALTH_P99_MS = 100.0
PER_ADDRESS = 10


class Http:
    """One keep-alive connection from a chosen loopback address (stdlib only)."""

    def __init__(self, port: int, source: str = "127.0.0.1", timeout: float = 60.0) -> None:
        self.port, self.source, self.timeout = port, source, timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes, float]:
        """(status, body, seconds); status 0 when the connection failed."""
        t0 = time.perf_counter()
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=self.timeout, source_address=(self.source, 0)
                )
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
                return resp.status, data, time.perf_counter() - t0
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt:
                    return 0, b"", time.perf_counter() - t0
        return 0, b"", time.perf_counter() - t0

    def json(self, method: str, path: str, payload: Any, token: str | None = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        status, body, _ = self.request(method, path, json.dumps(payload).encode(), headers)
        if status >= 300:
            raise RuntimeError(f"{method} {path}: {status} {body[:300]!r}")
        return json.loads(body) if body else None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def multipart(field_name: str, filename: str, data: bytes) -> tuple[bytes, str]:
    """A search form: the photo, and ``largest`` (a scaled-up photo may show a second,
    false face)."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="largest"\r\n\r\ntrue\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"; '
        f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), (
        f"multipart/form-data; boundary={boundary}"
    )


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_server(tmp: Path, password: str, src: Path | None) -> Server:
    env = {
        **os.environ,
        "SAURON_WEB__ADMIN_PASSWORD": password,
        "SAURON_STORE__DATA_DIR": str(tmp / "data"),
    }
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    log = tmp / "server.log"
    cmd = [sys.executable, "-m", "sauron.cli", "web", "--web-host", "127.0.0.1", "--web-port", "0"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        m = re.search(r"web: http://127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))
        if m:
            return Server(proc, int(m.group(1)), log)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"sauron web did not start:\n{log.read_text(errors='replace')[-3000:]}")


@dataclass
class Samples:
    """What the sampling threads collect, tagged by phase (idle or flood)."""

    phase: str = "warmup"
    rss: dict[str, list[float]] = field(default_factory=lambda: {"idle": [], "flood": []})
    health: dict[str, list[float]] = field(default_factory=lambda: {"idle": [], "flood": []})
    health_failed: int = 0
    flood_cpu_s: float = 0.0  # CPU seconds the server used during the flood


def sample_rss(pid: int, samples: Samples, stop: threading.Event) -> None:
    proc = psutil.Process(pid)
    while not stop.wait(RSS_EVERY_S):
        try:
            rss = proc.memory_info().rss / 2**20
        except psutil.Error:
            return
        if samples.phase in samples.rss:
            samples.rss[samples.phase].append(rss)


def probe_health(port: int, samples: Samples, stop: threading.Event) -> None:
    http = Http(port, "127.0.0.1", timeout=10)
    while not stop.wait(HEALTH_EVERY_S):
        phase = samples.phase
        status, _, took = http.request("GET", "/api/health")
        if phase not in samples.health:
            continue
        if status == 200:
            samples.health[phase].append(took * 1000)
        else:
            samples.health_failed += 1
    http.close()


def flood_logins(
    port: int, stop: threading.Event, counts: Counter[str], lock: threading.Lock, seed: int
) -> None:
    """Failed log-ins over one connection at a time, moving to the next address of a pool
    of 250 every ``PER_ADDRESS`` requests (a client on many machines)."""
    n = seed
    http = Http(port, "127.0.4.1")
    while not stop.is_set():
        n += 1
        if n % PER_ADDRESS == 0:
            http.close()
            http = Http(port, f"127.0.4.{n // PER_ADDRESS % 250 + 1}")
        user = ADMIN if n % 4 == 0 else f"nobody{secrets.token_hex(4)}"
        body = json.dumps({"username": user, "password": "wrong-" + secrets.token_hex(6)})
        status, _, _ = http.request(
            "POST", "/api/login", body.encode(), {"Content-Type": "application/json"}
        )
        with lock:
            counts[f"login {status}"] += 1
    http.close()


def flood_uploads(
    port: int,
    token: str,
    payloads: list[tuple[str, Callable[[], bytes]]],
    stop: threading.Event,
    counts: Counter[str],
    lock: threading.Lock,
    seed: int,
) -> None:
    http = Http(port, "127.0.0.1", timeout=120)
    n = seed
    while not stop.is_set():
        n += 1
        kind, make = payloads[n % len(payloads)]
        body, ctype = multipart("photo", f"{kind}.img", make())
        status, _, _ = http.request(
            "POST",
            "/api/search",
            body,
            {"Content-Type": ctype, "Authorization": f"Bearer {token}"},
        )
        with lock:
            counts[f"search {kind} {status}"] += 1
    http.close()


def _png_bomb() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (7000, 7000)).save(buf, "PNG")
    return buf.getvalue()


def _large_face(megapixels: float) -> bytes:
    """A sample face photo scaled to ``megapixels`` (JPEG)."""
    from sauron.demo.samples import sample_photos

    img = Image.open(sample_photos()["obama.jpg"]).convert("RGB")
    scale = (megapixels * 1e6 / (img.width * img.height)) ** 0.5
    big = img.resize((int(img.width * scale), int(img.height * scale)), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _unique(data: bytes) -> Callable[[], bytes]:
    """The same JPEG with random bytes after its end: another file to every cache."""
    return lambda: data + secrets.token_bytes(16)


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(float(np.percentile(np.asarray(values), q)), 1)


def summarize(
    samples: Samples, counts: Counter[str], args: argparse.Namespace, src: Path | None
) -> dict[str, Any]:
    idle_rss = statistics.median(samples.rss["idle"]) if samples.rss["idle"] else None
    peak_rss = max(samples.rss["flood"], default=None)
    ratio = round(peak_rss / idle_rss, 3) if idle_rss and peak_rss else None
    flood_p99 = _pct(samples.health["flood"], 99)
    return {
        "seconds": args.seconds,
        "login_threads": args.logins,
        "upload_threads": args.uploads,
        "server_src": str(src) if src else "this installation",
        "server_cpu_cores_in_flood": round(samples.flood_cpu_s / args.seconds, 2),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "rss_mb": {
            "idle_median": round(idle_rss, 1) if idle_rss else None,
            "flood_peak": round(peak_rss, 1) if peak_rss else None,
            "flood_median": round(statistics.median(samples.rss["flood"]), 1)
            if samples.rss["flood"]
            else None,
            "peak_over_idle": ratio,
        },
        "health_ms": {
            phase: {
                "n": len(v),
                "p50": _pct(v, 50),
                "p99": _pct(v, 99),
                "max": round(max(v), 1) if v else None,
            }
            for phase, v in samples.health.items()
        },
        "health_failed": samples.health_failed,
        "answers": dict(sorted(counts.items())),
        "targets": {
            "peak_over_idle_below": TARGET_RSS_RATIO,
            "health_p99_ms_below": TARGET_HEALTH_P99_MS,
            "met": bool(
                ratio is not None
                and ratio < TARGET_RSS_RATIO
                and flood_p99 is not None
                and flood_p99 < TARGET_HEALTH_P99_MS
                and samples.health_failed == 0
            ),
        },
    }


def render(result: dict[str, Any]) -> str:
    rss, health = result["rss_mb"], result["health_ms"]
    lines = [
        f"security flood ({result['server_src']}): {result['seconds']:g} s, "
        f"{result['login_threads']} log-in and {result['upload_threads']} upload threads; "
        f"load average {result['load_average']}",
        f"  server RSS: idle {rss['idle_median']} MB, peak {rss['flood_peak']} MB during the "
        f"flood = {rss['peak_over_idle']}x idle (target < {TARGET_RSS_RATIO}x)",
    ]
    for phase in ("idle", "flood"):
        h = health[phase]
        lines.append(
            f"  /api/health {phase}: p50 {h['p50']} ms, p99 {h['p99']} ms, max {h['max']} ms "
            f"({h['n']} asked)"
        )
    lines.append(f"  /api/health failed: {result['health_failed']}")
    lines.append(f"  server CPU during the flood: {result['server_cpu_cores_in_flood']} cores")
    lines.append("  answers: " + ", ".join(f"{k}: {v}" for k, v in result["answers"].items()))
    lines.append(f"  targets met: {result['targets']['met']}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sauron bench security",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--seconds", type=float, default=20.0, help="length of the flood")
    p.add_argument("--idle-seconds", type=float, default=4.0, help="idle measurement")
    p.add_argument("--logins", type=int, default=32, help="threads sending failed log-ins")
    p.add_argument("--uploads", type=int, default=4, help="threads sending searches by photo")
    p.add_argument(
        "--megapixels", type=float, default=15.5, help="size of the large face photo sent"
    )
    p.add_argument("--out", type=Path, default=Path("sauron-bench"), help="folder for the JSON")
    p.add_argument("--server-src", type=Path, help="run the server from this source tree instead")
    p.add_argument(
        "--baseline-src",
        type=Path,
        help="then flood a server run from this source tree (e.g. an older checkout's src) "
        "the same way, and report both",
    )
    return p


def run(args: argparse.Namespace, src: Path | None) -> dict[str, Any]:
    password = "bench-" + secrets.token_urlsafe(18)
    viewer_pw = "watcher-" + secrets.token_urlsafe(18)
    large = _large_face(args.megapixels)
    payloads = [("png7000", _unique(_png_bomb())), ("face", _unique(large))]
    with tempfile.TemporaryDirectory(prefix="sauron-bench-security-") as tmp:
        server = start_server(Path(tmp), password, src)
        samples, counts, lock = Samples(), Counter[str](), threading.Lock()
        stop_sampling, stop_flood = threading.Event(), threading.Event()
        try:
            http = Http(server.port)
            token = http.json("POST", "/api/login", {"username": ADMIN, "password": password})[
                "token"
            ]
            http.json(
                "POST",
                "/api/users",
                {"username": "flood", "password": viewer_pw, "role": "viewer"},
                token,
            )
            viewer = http.json("POST", "/api/login", {"username": "flood", "password": viewer_pw})[
                "token"
            ]
            body, ctype = multipart("photo", "warm.jpg", large)
            status, text, _ = http.request(
                "POST",
                "/api/search",
                body,
                {"Content-Type": ctype, "Authorization": f"Bearer {viewer}"},
            )
            if status != 200:
                raise RuntimeError(f"the warm-up search failed: {status} {text[:300]!r}")
            http.close()
            samplers = [
                threading.Thread(target=sample_rss, args=(server.pid, samples, stop_sampling)),
                threading.Thread(target=probe_health, args=(server.port, samples, stop_sampling)),
            ]
            for t in samplers:
                t.start()
            time.sleep(1.0)
            samples.phase = "idle"
            time.sleep(args.idle_seconds)
            cpu0 = psutil.Process(server.pid).cpu_times()
            samples.phase = "flood"
            flooders = [
                threading.Thread(
                    target=flood_logins, args=(server.port, stop_flood, counts, lock, i * 1000)
                )
                for i in range(args.logins)
            ] + [
                threading.Thread(
                    target=flood_uploads,
                    args=(server.port, viewer, payloads, stop_flood, counts, lock, i),
                )
                for i in range(args.uploads)
            ]
            for t in flooders:
                t.start()
            time.sleep(args.seconds)
            stop_flood.set()
            for t in flooders:
                t.join(180)
            samples.phase = "done"
            cpu1 = psutil.Process(server.pid).cpu_times()
            samples.flood_cpu_s = cpu1.user + cpu1.system - cpu0.user - cpu0.system
            stop_sampling.set()
            for t in samplers:
                t.join(30)
        finally:
            stop_flood.set()
            stop_sampling.set()
            server.stop()
    return summarize(samples, counts, args, src)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.seconds <= 0 or args.logins < 0 or args.uploads < 0:
        build_parser().error("--seconds must be > 0; --logins and --uploads >= 0")
    result = run(args, args.server_src)
    print(render(result))
    doc: dict[str, Any] = {"this": result}
    if args.baseline_src is not None:
        base = run(args, args.baseline_src)
        print(render(base))
        doc["baseline"] = base
        peak, base_peak = result["rss_mb"]["flood_peak"], base["rss_mb"]["flood_peak"]
        p99, base_p99 = result["health_ms"]["flood"]["p99"], base["health_ms"]["flood"]["p99"]
        doc["baseline_over_this"] = {
            "rss_peak": round(base_peak / peak, 2) if peak and base_peak else None,
            "health_p99": round(base_p99 / p99, 2) if p99 and base_p99 else None,
        }
        print(f"baseline / this: {doc['baseline_over_this']}")
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "security.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
