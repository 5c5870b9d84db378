"""The routine path's runs and the messages that poll them, as plain data (their records: services/routines.py).

CLAY_ENRICHMENT_PATH=routine sends leads to a Clay routine through the Public API instead of a
table webhook (services/routine_sender.py); a Run is one routine run Clay accepted, with the inputs it
got for each lead. Results are collected without depending on Clay's run-finished webhook (not
guaranteed): each run has a chain of delayed messages on RunPollQueue, `{"trigger": "poll"}`, the first
sent with the run and each later one by the collector while the run is in progress, with a growing
delay (poll_delay), until the run is complete or its give-up time has passed (services/run_collector.py).
A verified webhook adds one `{"trigger": "webhook"}` message with no delay (services/run_webhook.py): it
collects sooner and never starts a chain of its own.

Why delayed SQS messages rather than an EventBridge schedule: each run carries its own timing
(first poll, backoff, give-up) and nothing runs while no run is open; the state table has only a
`pk` key, so a schedule would have to Scan it to find open runs; and the queue brings retries,
partial batch failures and a DLQ (with an alarm) for a poll that keeps failing.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from typing import Any, Literal

from clay_pipeline.core.column_values import identifier_problem

MAX_ITEM_ID_LENGTH = 64  # Clay's limit on a routine item's id (a lead_id); also bounds a run id we accept

DAY_SECONDS = 86_400
Trigger = Literal["poll", "webhook"]
Ending = Literal["collected", "gave_up", "abandoned"]  # abandoned: the sender could not queue its polls
Underway = Literal["collecting", "giving_up"]  # a run's mark while a collector or a give-up holds it
UNDERWAY: dict[str, Underway] = {"collected": "collecting", "gave_up": "giving_up"}  # ending -> its hold


@dataclass(frozen=True)
class Run:
    run_id: str
    routine_id: str
    started_at: float  # epoch seconds
    inputs: dict[str, dict[str, Any]]  # lead_id -> the inputs Clay got for it (the lead message)

    @property
    def lead_ids(self) -> list[str]:
        return list(self.inputs)


@dataclass(frozen=True)
class PollMessage:
    run_id: str
    trigger: Trigger = "poll"
    attempt: int = 0  # polls of this chain so far: sets the next delay

    def to_message(self) -> dict[str, Any]:
        return {"routine_run_id": self.run_id, "trigger": self.trigger, "attempt": self.attempt}

    @classmethod
    def parse(cls, body: str) -> PollMessage:
        """A message from RunPollQueue; ValueError when it is not one."""
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ValueError("not a run poll message: needs a routine_run_id string")
        if problem := identifier_problem(document.get("routine_run_id"), MAX_ITEM_ID_LENGTH):
            raise ValueError(f"not a run poll message: its routine_run_id {problem}")
        trigger = document.get("trigger", "poll")
        if trigger not in ("poll", "webhook"):
            raise ValueError(f"unknown trigger {str(trigger)[:40]}")
        attempt = document.get("attempt", 0)
        return cls(document["routine_run_id"], trigger, attempt if isinstance(attempt, int) else 0)


def poll_delay(attempt: int, first_seconds: int, max_seconds: int) -> int:
    """Seconds before poll number `attempt` + 1: doubling from the first delay, capped, with 20% jitter."""
    base = min(max_seconds, first_seconds * 2 ** min(attempt, 16))
    # random jitter, not security: hence nosec B311
    return max(1, min(max_seconds, round(base * random.uniform(0.8, 1.2))))  # nosec B311


@dataclass(frozen=True)
class NextPoll:
    message: PollMessage
    delay_seconds: int


@dataclass(frozen=True)
class GiveUp:
    reason: str
    detail: str


def after_no_results(
    message: PollMessage,
    started_at: float,
    now: float,
    give_up_seconds: int,
    first_poll_seconds: int,
    max_poll_seconds: int,
    progress: str,
) -> NextPoll | GiveUp | None:
    """What follows a read of a run that has no results yet: nothing for a webhook's message (the run's poll
    chain goes on), the give-up once the run's time is over, else the chain's next poll, never due after the
    give-up time."""
    if message.trigger == "webhook":
        return None
    remaining = started_at + give_up_seconds - now
    if remaining <= 0:
        return GiveUp("routine_run_gave_up", f"no results within {give_up_seconds} s ({progress})")
    delay = poll_delay(message.attempt + 1, first_poll_seconds, max_poll_seconds)
    return NextPoll(PollMessage(message.run_id, "poll", message.attempt + 1), min(delay, math.ceil(remaining)))
