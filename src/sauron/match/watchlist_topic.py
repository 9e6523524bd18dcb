"""The watchlist over Kafka: a compacted topic keyed by person, followed by every matcher.

:func:`publish_person` enrolls (or removes) a person for every running matcher (the
command line, the web app and ``sauron run`` use it); a matcher keeps a
:class:`~sauron.match.watchlist.Watchlist` in step with the topic
(:func:`follow_watchlist`, :func:`watchlist_from_topic`). Key = person name, value = the
person's embeddings (the codec's person message), an empty value = removed, so
enrollments and removals reach running matchers without a restart and survive restarts.
"""

from __future__ import annotations

import logging

from confluent_kafka import Message

from sauron import codec
from sauron.bus.client import make_producer
from sauron.bus.tail import TopicTail
from sauron.bus.topics import Topics
from sauron.config import Settings
from sauron.match.watchlist import Watchlist

log = logging.getLogger(__name__)


def publish_person(settings: Settings, person: codec.Person | None, name: str) -> None:
    """Enroll (or with ``person=None`` remove) a person for every running matcher."""
    producer = make_producer(settings.bus)
    topic = Topics.from_config(settings.topics).watchlist
    value = codec.encode_person(person) if person is not None else None
    producer.produce(topic, key=name, value=value)
    left = producer.flush(settings.bus.connect_timeout_s)
    if left:
        raise RuntimeError(f"watchlist update for {name} was not acknowledged by Kafka")


def follow_watchlist(settings: Settings, watchlist: Watchlist) -> TopicTail:
    """Keep ``watchlist`` in step with the watchlist topic (from its beginning)."""
    topic = Topics.from_config(settings.topics).watchlist

    def on_msg(msg: Message) -> None:
        name = (msg.key() or b"").decode("utf-8", "replace")
        value = msg.value()
        if not value:
            watchlist.remove(name)
            return
        try:
            watchlist.upsert(codec.decode_person(value))
        except codec.CodecError as exc:
            log.warning("watchlist entry %r ignored: %s", name, exc)

    tail = TopicTail(settings.bus, topic, on_msg)
    tail.start()
    return tail


def watchlist_from_topic(settings: Settings) -> tuple[Watchlist, TopicTail]:
    """A watchlist kept in step with the watchlist topic, read to its end first (or for
    twice the connect timeout, then matching starts with what was read)."""
    watchlist = Watchlist()
    tail = follow_watchlist(settings, watchlist)
    if not tail.caught_up.wait(settings.bus.connect_timeout_s * 2):
        log.warning("watchlist topic not read to its end yet; matching starts anyway")
    return watchlist, tail
