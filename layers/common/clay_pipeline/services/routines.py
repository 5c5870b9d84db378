"""The routine path's shared records: runs in the state table and the messages that poll them.

CLAY_ENRICHMENT_PATH=routine sends leads to a Clay routine through the Public API instead of a
table webhook (routine_sender.py). Each run started is recorded once, `run#<routine_run_id>`:
routine, lead ids, started at, and the items' inputs (zlib-compressed, so 100 leads cost a few
write units; the record is never rewritten). Its ending is a small mark of its own,
`run-done#<routine_run_id>`, so the big record costs one write. The same mark keeps a run's
collection and its give-up apart: a collector that has Clay's complete results first marks the run
`collecting`, a give-up first marks it `giving_up`, each only over no mark or its own (a retry
after a crash retakes it), and each then moves it to its ending (`collected`, `gave_up`). So a
run whose webhook-triggered collection meets its poll chain's give-up has its leads either
routed or dead-lettered, never both; that costs one write per collection of a run (100 leads).
Leads of recorded runs whose dedupe marks the sender could not set to 'sent' are listed under
`run-leads#<batch id>` (RunStore.list_unconfirmed): a later copy of such a lead is then skipped,
not sent in a second run.

Results are collected without depending on Clay's run-finished webhook (not guaranteed):
each run has a chain of delayed messages on RunPollQueue, `{"trigger": "poll"}`, the first
sent with the run and each later one by the collector while the run is in progress, with a
growing delay, until the run is complete or its give-up time has passed (run_collector.py). A
verified webhook adds one `{"trigger": "webhook"}` message with no delay (run_webhook.py):
it collects sooner and never starts a chain of its own.

Why delayed SQS messages rather than an EventBridge schedule: each run carries its own timing
(first poll, backoff, give-up) and nothing runs while no run is open; the state table has only a
`pk` key, so a schedule would have to Scan it to find open runs; and the queue brings retries,
partial batch failures and a DLQ (with an alarm) for a poll that keeps failing.
"""

from __future__ import annotations

import base64
import json
import random
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from clay_pipeline.adapters.dynamodb import STATE_TTL
from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.core.column_values import identifier_problem
from clay_pipeline.core.json_text import dump_json

MAX_ITEM_ID_LENGTH = 64  # Clay's limit on a routine item's id (a lead_id); also bounds a run id we accept

RUN_RECORD_DAYS = 30
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
class RunStore:
    """Runs in STATE_TABLE: the record written when Clay accepted the run, and its ending mark."""

    store: StateStore

    def record(self, run_id: str, routine_id: str, inputs: dict[str, dict[str, Any]]) -> Run:
        run = Run(run_id, routine_id, time.time(), inputs)
        attributes = {
            "routine_id": routine_id,
            "lead_ids": run.lead_ids,
            "items": len(inputs),
            "started_at": datetime.fromtimestamp(run.started_at, UTC).isoformat(),
            "started_epoch": run.started_at,
            "inputs_z": base64.b64encode(zlib.compress(dump_json(inputs).encode(), 6)).decode(),
        }
        if not self.store.put_mark(self._key(run_id), RUN_RECORD_DAYS * DAY_SECONDS, attributes):
            raise RuntimeError(f"run {run_id} is already recorded")  # Clay gave the same id twice
        return run

    def get(self, run_id: str) -> Run | None:
        item = self.store.get(self._key(run_id))
        if item is None:
            return None
        inputs = json.loads(zlib.decompress(base64.b64decode(str(item["inputs_z"]))))
        return Run(run_id, str(item.get("routine_id", "")), float(item["started_epoch"]), inputs)

    def ending(self, run_id: str) -> str | None:
        """The run's mark: an Ending, an Underway hold, or None while nothing has decided it."""
        mark = self.mark(run_id)
        return str(mark["status"]) if mark else None

    def mark(self, run_id: str) -> dict[str, Any] | None:
        return self.store.get(self._done_key(run_id))

    def hold(self, run_id: str, way: Underway, days: int, **why: str) -> bool:
        """Hold the run for a collection or a give-up; False when the other holds it or the run ended."""
        key, attributes = self._done_key(run_id), {"status": way, **why}
        return self.store.put_mark(key, days * DAY_SECONDS, attributes, replacing=("status", way))

    def end(self, run_id: str, ending: Ending, days: int) -> bool:
        """Record how the run ended (over its own hold); False when another collector recorded it first."""
        way = UNDERWAY.get(ending)
        replacing = ("status", way) if way else None
        return self.store.put_mark(self._done_key(run_id), days * DAY_SECONDS, {"status": ending}, replacing)

    def list_unconfirmed(self, batch_id: str, runs: dict[str, str], ttl_seconds: int) -> None:
        """`run-leads#<batch id>`: leads of one sender invocation's recorded runs whose dedupe marks could
        not be set to 'sent' (lead id -> run id). It confirms those marks instead (limits.Deduper), so it
        lives as long as they do; rewritten whole as the invocation's list grows."""
        self.store.update(self._batch_key(batch_id), {"leads": runs, STATE_TTL: int(time.time()) + ttl_seconds})

    def lists(self, batch_id: str, lead_id: str) -> bool:
        """Whether a recorded run of that sender invocation has the lead (its batch list names it)."""
        return self.listed_run(batch_id, lead_id) is not None

    def listed_run(self, batch_id: str, lead_id: str) -> str | None:
        """The recorded run that the sender invocation's batch list names for the lead, None when it names none."""
        item = self.store.get(self._batch_key(batch_id))
        run_id = ((item or {}).get("leads") or {}).get(lead_id)
        return str(run_id) if run_id else None

    def summary(self, run_id: str) -> dict[str, Any]:
        """What `clay-pipeline trace` shows of a run: when Clay accepted it (ISO, '' when not recorded or
        expired), its items and its mark ('' while nothing has decided it)."""
        item = self.store.get(self._key(run_id)) or {}
        return {
            "started_at": str(item.get("started_at", "")),
            "items": int(item["items"]) if item.get("items") is not None else None,
            "ending": self.ending(run_id) or "",
        }

    @staticmethod
    def _key(run_id: str) -> str:
        return f"run#{run_id}"

    @staticmethod
    def _batch_key(batch_id: str) -> str:
        return f"run-leads#{batch_id}"

    @staticmethod
    def _done_key(run_id: str) -> str:
        return f"run-done#{run_id}"
