"""Readings the benchmarks take of the machine: free loopback ports, a process's resident
memory, the counters of a worker's /metrics."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process from /proc (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def free_ports(n: int) -> int:
    """A base port P with P .. P+n-1 free on 127.0.0.1."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + n < 65536 and all(port_free(base + i) for i in range(1, n)):
            return base
    raise RuntimeError(f"no {n} free consecutive loopback ports")


def port_free(port: int) -> bool:
    """Whether ``port`` can be bound on 127.0.0.1 now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def scrape(port: int) -> dict[str, float]:
    """Sum of each sample of a worker's /metrics, by name and labels (text format)."""
    out: dict[str, float] = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = out.get(key, 0.0) + float(value)
    return out


def counter(samples: list[dict[str, float]], prefix: str) -> float:
    """Sum over workers of every sample whose name+labels start with ``prefix``."""
    return sum(v for s in samples for k, v in s.items() if k.startswith(prefix))
