"""Workers on another host: a ``sauron worker detect`` in a network namespace of its own
reaches the broker and the run over a virtual Ethernet link, with nothing on 127.0.0.1.

The test makes two network namespaces inside an unprivileged user namespace (``unshare
-rn``): "A" holds the broker (``SAURON_KAFKA_HOST=10.77.0.1``) and ``sauron run``; "B"
holds only the joined detect worker, at 10.77.0.2. B's loopback has no broker, so every
frame the worker detects crossed the link both ways."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sauron.demo.synth import demo_clips

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
HOST_A, HOST_B = "10.77.0.1", "10.77.0.2"
PORT = 19592  # inside namespace A only: no clash with anything on this machine

# Runs as root of a fresh user namespace, in namespace A. Every process it starts ends
# with it: the broker is stopped, the worker and namespace B's holder are signalled by pid.
SCRIPT = r"""
set -euo pipefail
ip link set lo up
unshare -n sleep 600 &
HOLDER=$!
for _ in $(seq 1 50); do
    [[ "$(readlink /proc/$HOLDER/ns/net)" != "$(readlink /proc/self/ns/net)" ]] && break
    sleep 0.1
done
B=/proc/$HOLDER/ns/net
ip link add veth-a type veth peer name veth-b netns "$HOLDER"
ip addr add {host_a}/24 dev veth-a
ip link set veth-a up
nsenter --net="$B" ip link set lo up
nsenter --net="$B" ip addr add {host_b}/24 dev veth-b
nsenter --net="$B" ip link set veth-b up
cleanup() {{
    [[ -n "${{WORKER:-}}" ]] && kill -TERM "$WORKER" 2>/dev/null && wait "$WORKER" || true
    "$BROKER" stop >/dev/null 2>&1 || true
    kill "$HOLDER" 2>/dev/null || true
}}
trap cleanup EXIT
SAURON_KAFKA_HOST={host_a} SAURON_KAFKA_PORT={port} "$BROKER" start >"$WORK/bootstrap.txt"
"$PY" -m sauron.cli topics create --config "$WORK/sauron.yaml"
nsenter --net="$B" "$PY" -m sauron.cli worker detect --config "$WORK/sauron.yaml" \
    >"$WORK/worker.log" 2>&1 &
WORKER=$!
for _ in $(seq 1 300); do
    grep -q "assigned" "$WORK/worker.log" && break
    kill -0 "$WORKER" || {{ cat "$WORK/worker.log" >&2; exit 1; }}
    sleep 0.2
done
"$PY" -m sauron.cli run --config "$WORK/sauron.yaml" --until-done --no-web \
    --results "$WORK/results.jsonl"
kill -TERM "$WORKER"
wait "$WORKER" || true
WORKER=
"""


def _namespaces_work() -> str | None:
    """Why user and network namespaces cannot be made here, or None."""
    for tool in ("unshare", "nsenter", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = subprocess.run(
        ["unshare", "-rn", "ip", "link", "add", "va", "type", "veth", "peer", "name", "vb"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return f"no unprivileged network namespaces: {probe.stderr.strip()}"
    return None


@pytest.mark.timeout(400)
def test_a_detect_worker_in_its_own_network_namespace_joins_the_run(tmp_path: Path) -> None:
    why = _namespaces_work()
    if why is not None:
        pytest.skip(why)
    clips = demo_clips(tmp_path / "clips", frames=30, fps=10)
    cameras = [
        {"name": f"{c.camera}{k}", "source": str(c.path), "realtime": False}
        for c in clips
        for k in range(2)
    ]
    config = {
        "cameras": cameras,
        "bus": {"type": "kafka", "bootstrap_servers": f"{HOST_A}:{PORT}"},
        "topics": {"prefix": "netns", "partitions": len(cameras)},
        "metrics": {"port": 0},
    }
    (tmp_path / "sauron.yaml").write_text(yaml.safe_dump(config))
    script = SCRIPT.format(host_a=HOST_A, host_b=HOST_B, port=PORT)
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(Path.home()),
        "WORK": str(tmp_path),
        "PY": sys.executable,
        "BROKER": str(ROOT / "scripts" / "kafka-broker"),
        "SAURON_KAFKA_DIR": str(tmp_path / "kafka"),
        "PYTHONPATH": str(ROOT / "src"),
    }
    for key in ("SAURON_CACHE", "JAVA_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
        if key in os.environ:
            env[key] = os.environ[key]
    proc = subprocess.run(
        ["unshare", "-rn", "--fork", "bash", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=380,
        check=False,
    )
    worker_log = (tmp_path / "worker.log").read_text() if (tmp_path / "worker.log").exists() else ""
    assert proc.returncode == 0, f"{proc.stderr[-4000:]}\nworker:\n{worker_log[-3000:]}"
    assert (tmp_path / "bootstrap.txt").read_text().split() == [f"{HOST_A}:{PORT}"]

    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(records) == 30 * len(cameras), "every frame came out"
    # the worker in namespace B detected some of them, and stopped cleanly
    done = re.search(r"stopped after (\d+) in, (\d+) done", worker_log)
    assert done is not None, worker_log[-3000:]
    assert int(done.group(2)) > 0, f"the worker in namespace B detected nothing:\n{worker_log}"
