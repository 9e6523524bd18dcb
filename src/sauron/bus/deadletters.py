"""Dead letters: an input a stage cannot handle (a corrupt frame, an unknown message
version, an output over the size limit) or whose outputs cannot be delivered goes to the
dead-letter topic, its value kept, the reason and where it came from in its headers."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from confluent_kafka import Message

from sauron.bus.client import MAX_VALUE_BYTES
from sauron.bus.handler import Output

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Origin:
    """The input an output came from, for dead letters of failed deliveries."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes

    @classmethod
    def of(cls, msg: Message) -> Origin:
        key = msg.key()
        return cls(
            msg.topic() or "",
            msg.partition() or 0,
            msg.offset() or 0,
            key.encode() if isinstance(key, str) else key,
            msg.value() or b"",
        )


def reason_label(reason: str) -> str:
    """A bounded metric label from a reason text: its leading exception class name."""
    head = reason.split(":", 1)[0].strip()
    return head if head.isidentifier() and len(head) <= 40 else "other"


@dataclass(frozen=True)
class DeadLetters:
    """Writes the dead letters of one stage (``stage``) for the topic ``topic``."""

    topic: str
    stage: str

    def letter(self, origin: Origin, reason: str) -> Output:
        """The dead letter of ``origin`` (logged), its value cut to the size limit."""
        log.warning(
            "%s: %s[%d]@%d to dead letters: %s",
            self.stage,
            origin.topic,
            origin.partition,
            origin.offset,
            reason,
        )
        headers = {
            "reason": reason[:1000],
            "stage": self.stage,
            "topic": origin.topic,
            "partition": str(origin.partition),
            "offset": str(origin.offset),
        }
        value = origin.value
        if len(value) > MAX_VALUE_BYTES:
            headers["truncated_from"] = str(len(value))
            value = value[:MAX_VALUE_BYTES]
        return Output(self.topic, value, key=origin.key, headers=headers)
