"""Selecting and grouping the dead letters an operator read (clay_pipeline/adapters/dead_letter_queues.py
reads them): by reason, age, message id or text."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from clay_pipeline.adapters.dead_letter_queues import DeadLetterMessage


@dataclass(frozen=True)
class Selection:
    """Which messages a command acts on; an empty selection takes every message."""

    reasons: frozenset[str] = frozenset()
    older_than: float | None = None  # seconds
    newer_than: float | None = None
    message_ids: frozenset[str] = frozenset()
    text: str = ""  # a substring of the reason, detail or destinations (e.g. "429")
    limit: int | None = None

    @property
    def everything(self) -> bool:
        return not (self.reasons or self.message_ids or self.text) and self.older_than is self.newer_than is None

    def matches(self, message: DeadLetterMessage, now: float) -> bool:
        age = message.age_seconds(now)
        attributes = message.attributes
        searched = " ".join((message.reason, attributes.get("detail", ""), attributes.get("destinations", "")))
        return (
            (not self.reasons or message.reason in self.reasons)
            and (self.older_than is None or age >= self.older_than)
            and (self.newer_than is None or age <= self.newer_than)
            and (not self.message_ids or bool({message.message_id, message.original_message_id} & self.message_ids))
            and (not self.text or self.text.lower() in searched.lower())
        )

    def pick(self, messages: Iterable[DeadLetterMessage], now: float | None = None) -> list[DeadLetterMessage]:
        now = time.time() if now is None else now
        picked = sorted((m for m in messages if self.matches(m, now)), key=lambda m: m.sent_at)
        return picked[: self.limit] if self.limit is not None else picked


@dataclass
class ReasonGroup:
    reason: str
    messages: list[DeadLetterMessage] = field(default_factory=list)

    def summary(self, now: float) -> dict[str, Any]:
        ages = [m.age_seconds(now) for m in self.messages]
        details = [m.attributes.get("detail", "") for m in self.messages if m.attributes.get("detail")]
        return {
            "reason": self.reason,
            "count": len(self.messages),
            "oldest_seconds": max(ages),
            "newest_seconds": min(ages),
            "example_detail": details[0] if details else "",
            "message_ids": [m.message_id for m in self.messages],
        }


def group_by_reason(messages: Iterable[DeadLetterMessage]) -> list[ReasonGroup]:
    groups: dict[str, ReasonGroup] = {}
    for message in messages:
        groups.setdefault(message.reason, ReasonGroup(message.reason)).messages.append(message)
    return sorted(groups.values(), key=lambda group: (-len(group.messages), group.reason))
