"""``sauron status``: each stage's workers, lag and throughput, read from the brokers;
or, for one running ``sauron run``/``sauron web``, which of its parts are alive.

Nothing here talks to the workers themselves: the consumer group of a stage says which
workers are alive (members) and what each owns (assignment), its committed offsets say
how far the stage got, and the input topic's end offsets say how far it could be.
Throughput is the growth of the committed offsets between two samples ``interval`` apart.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from sauron import SauronError
from sauron.bus.client import check_reachable, client_config
from sauron.bus.topics import Topics
from sauron.config import Settings

log = logging.getLogger(__name__)


@dataclass
class Member:
    client_id: str
    host: str
    partitions: list[int]


@dataclass
class PartitionLag:
    partition: int
    end: int
    committed: int | None
    lag: int
    owner: str | None


@dataclass
class StageStatus:
    stage: str
    group: str
    topic: str
    state: str
    workers: int
    members: list[Member]
    partitions: list[PartitionLag]
    lag: int
    done_per_s: float
    input_per_s: float


@dataclass
class ClusterStatus:
    bootstrap: str
    interval_s: float
    stages: list[StageStatus] = field(default_factory=list)
    dead_letters: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def stage_groups(settings: Settings) -> list[tuple[str, str, str]]:
    """(stage, consumer group, input topic) of every Kafka stage (no match stage of its
    own while the detect workers match: ``match.in_detect``)."""
    topics = Topics.from_config(settings.topics)
    stages = [("detect", settings.topics.name("detect"), topics.frames)]
    if not settings.match.in_detect:
        stages.append(("match", settings.topics.name("match"), topics.detections))
    return stages


def _result(fut: Any, timeout: float, what: str) -> Any:
    try:
        return fut.result(timeout=timeout)
    except KafkaException as exc:
        raise SauronError(f"cannot read {what}: {exc.args[0]}") from None


def _offsets(
    admin: AdminClient, topic: str, parts: list[int], timeout: float, *, end: bool
) -> dict[int, int]:
    """The end (of committed messages) or else the start offset of each of ``parts``."""
    if not parts:
        return {}
    spec = OffsetSpec.latest() if end else OffsetSpec.earliest()
    req = {TopicPartition(topic, p): spec for p in parts}
    options = {"isolation_level": IsolationLevel.READ_COMMITTED} if end else {}
    futs = admin.list_offsets(req, request_timeout=timeout, **options)
    what = f"{'end' if end else 'start'} offsets of {topic}"
    return {tp.partition: _result(f, timeout, what).offset for tp, f in futs.items()}


def _committed(admin: AdminClient, group: str, timeout: float) -> dict[tuple[str, int], int]:
    futs = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)], request_timeout=timeout
    )
    res = _result(futs[group], timeout, f"committed offsets of group {group}")
    return {
        (tp.topic, tp.partition): tp.offset for tp in res.topic_partitions or [] if tp.offset >= 0
    }


def _members(admin: AdminClient, group: str, timeout: float) -> tuple[str, list[Member]]:
    futs = admin.describe_consumer_groups([group], request_timeout=timeout)
    desc = _result(futs[group], timeout, f"group {group}")
    members = [
        Member(
            client_id=m.client_id,
            host=m.host,
            partitions=sorted(tp.partition for tp in (m.assignment.topic_partitions or [])),
        )
        for m in desc.members
    ]
    return str(desc.state.name).lower(), members


@dataclass
class _Sample:
    at: float
    ends: dict[str, dict[int, int]]
    committed: dict[str, dict[tuple[str, int], int]]


def _sample(
    admin: AdminClient, settings: Settings, parts: dict[str, list[int]], timeout: float
) -> _Sample:
    ends = {topic: _offsets(admin, topic, ps, timeout, end=True) for topic, ps in parts.items()}
    committed = {group: _committed(admin, group, timeout) for _, group, _ in stage_groups(settings)}
    return _Sample(time.monotonic(), ends, committed)


def collect(settings: Settings, interval: float = 2.0) -> ClusterStatus:
    """Sample the cluster twice, ``interval`` seconds apart (0: once, no throughput)."""
    counts = check_reachable(settings.bus)
    timeout = settings.bus.connect_timeout_s
    admin = AdminClient(client_config(settings.bus))
    topics = Topics.from_config(settings.topics)
    inputs = {topic for _, _, topic in stage_groups(settings)} | {topics.deadletter}
    parts = {t: list(range(counts[t])) for t in inputs if t in counts}
    first = _sample(admin, settings, parts, timeout)
    last = first
    if interval > 0:
        time.sleep(interval)
        last = _sample(admin, settings, parts, timeout)
    dt = max(1e-9, last.at - first.at)
    status = ClusterStatus(settings.bus.bootstrap_servers, round(last.at - first.at, 3))
    dl_ends = last.ends.get(topics.deadletter, {})
    dl_start = _offsets(admin, topics.deadletter, list(dl_ends), timeout, end=False)
    status.dead_letters = sum(max(0, e - dl_start.get(p, 0)) for p, e in dl_ends.items())
    for stage, group, topic in stage_groups(settings):
        state, members = _members(admin, group, timeout)
        owners = {p: m.client_id for m in members for p in m.partitions}
        ends = last.ends.get(topic, {})
        committed = last.committed[group]
        lags = []
        for p, end in sorted(ends.items()):
            done = committed.get((topic, p))
            lag = end - done if done is not None else end
            lags.append(PartitionLag(p, end, done, max(0, lag), owners.get(p)))
        before = sum(v for (t, _), v in first.committed[group].items() if t == topic)
        after = sum(v for (t, _), v in committed.items() if t == topic)
        fed = sum(ends.values()) - sum(first.ends.get(topic, {}).values())
        status.stages.append(
            StageStatus(
                stage=stage,
                group=group,
                topic=topic,
                state=state,
                workers=len(members),
                members=members,
                partitions=lags,
                lag=sum(x.lag for x in lags),
                done_per_s=round((after - before) / dt, 2) if interval > 0 else 0.0,
                input_per_s=round(fed / dt, 2) if interval > 0 else 0.0,
            )
        )
    return status


def render(status: ClusterStatus, *, partitions: bool = False) -> str:
    """A plain-text table of ``status``."""
    lines = [
        f"cluster {status.bootstrap} (throughput over {status.interval_s:.1f} s)",
        f"{'stage':<8}{'group':<28}{'state':<12}{'workers':>8}{'lag':>10}"
        f"{'done/s':>10}{'input/s':>10}",
    ]
    for s in status.stages:
        lines.append(
            f"{s.stage:<8}{s.group:<28}{s.state:<12}{s.workers:>8}{s.lag:>10}"
            f"{s.done_per_s:>10.1f}{s.input_per_s:>10.1f}"
        )
        if partitions:
            for p in s.partitions:
                done = "-" if p.committed is None else str(p.committed)
                lines.append(
                    f"    {s.topic}[{p.partition}] end {p.end} committed {done} "
                    f"lag {p.lag} owner {p.owner or '-'}"
                )
    lines.append(f"dead letters: {status.dead_letters}")
    return "\n".join(lines)


def read_parts(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """The health answer (``/api/health``) of the web app of a running ``sauron run`` or
    ``sauron web``: ``ok`` and each long-running part's state."""
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/api/health", timeout=timeout) as r:
            body = r.read()
    except urllib.error.HTTPError as exc:  # 503: a part is dead, the body says which
        body = exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SauronError(
            f"cannot reach {url}: {reason}; is `sauron run` (with its web app) or "
            "`sauron web` running there? (--url to name another address)"
        ) from None
    try:
        got: dict[str, Any] = json.loads(body)
    except ValueError:
        raise SauronError(f"{url}/api/health did not answer with JSON") from None
    return got


def render_parts(url: str, health: dict[str, Any]) -> str:
    """A plain-text table of :func:`read_parts`' answer."""
    lines = [f"{url}: {'ok' if health.get('ok') else 'NOT OK'} (version {health.get('version')})"]
    lines += [f"  {name:<28}{state}" for name, state in sorted(health.get("parts", {}).items())]
    return "\n".join(lines)
