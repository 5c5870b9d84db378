"""What both sender paths share (the table webhook's ClaySender and the routine's RoutineSender hold one):
the invocation's deadline and waits, the shared limits (dedupe, daily budget, pacing), waiting out
Clay's 429, and how a LeadQueue record ends.

A record that is not sent ends in one of these ways (core/outcomes.py):
- DeadLetter: it can never succeed (malformed, invalid, over CLAY_MAX_PAYLOAD_BYTES, a body or run Clay
  refuses for good: core/sending.py); it goes to LEAD_DLQ_URL at once with the reason and counts as processed;
- Wait: it must wait (rate, 429, daily budget, every webhook full or gone, a lost answer being held)
  or failed in a way that may pass (`failure`: 5xx, connection error). Its visibility is set to the
  wait (a failure's: backoff with jitter) and it is reported as a batch item failure. Waits do not
  cost the message its place: one that is about to reach maxReceiveCount is re-queued as a fresh
  copy instead, so waiting never dead-letters.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pydantic import ValidationError

from clay_pipeline.adapters.batch_records import SentBatch
from clay_pipeline.adapters.queues import Queue, origin_attributes
from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.config import SenderSettings
from clay_pipeline.core.leads import Lead, describe_problems
from clay_pipeline.core.outcomes import DeadLetter, Wait
from clay_pipeline.core.sending import (
    Claim,
    InvocationWaits,
    claim_wait,
    pending_wait,
    record_delay,
    throttle_wait,
)
from clay_pipeline.observability import count, logger
from clay_pipeline.queue_batch import QueueRecord
from clay_pipeline.services.dedupe import Deduper
from clay_pipeline.services.sending_limits import Clock, DailyBudget, Pacer, utc_now

SAFETY_MARGIN_SECONDS = 2.0  # left unused at the end of an invocation to report the batch


@dataclass
class Invocation:
    deadline: float  # time.monotonic() after which no new send starts
    urls: list[str] = field(default_factory=list)  # the table path's webhook URLs (a secret)
    auth_token: str | None = None
    waits: InvocationWaits = field(default_factory=InvocationWaits)
    pending: int = 1  # records of the batch not yet processed, this one included: what to reserve for
    posting: int = 0  # records whose POST is in flight (they hold their pacing slot already)
    batch: SentBatch = field(default_factory=SentBatch)  # the leads sent in this invocation


def parse_lead(body: str) -> Lead:
    try:
        document = json.loads(body)
    except ValueError as error:
        raise DeadLetter("malformed_json", f"body is not valid JSON: {getattr(error, 'msg', error)}") from None
    except RecursionError:
        raise DeadLetter("malformed_json", "body is nested too deeply to read") from None
    if not isinstance(document, dict):
        raise DeadLetter("not_object", f"body must be a JSON object, not {type(document).__name__}")
    try:
        return Lead.model_validate(document)
    except ValidationError as error:
        raise DeadLetter("invalid_lead", describe_problems(error)) from None


def claim_details(lead: Lead, batch_id: str) -> dict[str, str]:
    """What a lead's dedupe claim records besides its status: its batch, and for `trace` where it came from."""
    return {"batch": batch_id, "source": lead.source, "submitted_at": lead.submitted_at.isoformat()}


class LeadSending:
    def __init__(
        self,
        settings: SenderSettings,
        confirmed_by: Callable[[str, str], bool],
        send_seconds: float,
        *,
        pacing_rate: float,
        hold_unrecorded: bool = True,
        clock: Clock = utc_now,
        sleep: Callable[[float], None] = time.sleep,
        store: StateStore | None = None,
        queue: Callable[[str], Queue] = Queue,
    ) -> None:
        """`confirmed_by` (batch id, lead id): that batch recorded the send (Deduper); `send_seconds`: the longest
        one send may take; `pacing_rate`: sends (table path) or runs (routine path) a second. `store` (the state
        table) and `queue` (a queue by its URL) default to the AWS adapters."""
        self.settings = settings
        store = store or StateStore(settings.state_table)
        self.dedupe = Deduper(
            store,
            settings.clay_dedupe_days,
            hold_seconds=settings.clay_unknown_hold_seconds,
            confirmed_by=confirmed_by,
            hold_unrecorded=hold_unrecorded,
        )
        self.budget = DailyBudget(store, settings.clay_daily_send_budget, clock)
        self.pacer = Pacer(store, pacing_rate, sleep=sleep)
        self.send_seconds = send_seconds  # the longest one send may take: every attempt timing out, plus backoff
        self.sleep = sleep
        self.lead_queue = queue(settings.lead_queue_url)
        self.dead_letters = queue(settings.lead_dlq_url)
        self.invocation = Invocation(deadline=float("inf"))

    def begin(self, remaining_ms: int, records: int, urls: list[str] | None = None, auth: str | None = None) -> None:
        """A new invocation: its deadline, its batch size, the table path's webhook URLs and token."""
        self.invocation = Invocation(
            deadline=time.monotonic() + remaining_ms / 1000 - SAFETY_MARGIN_SECONDS,
            urls=urls or [],
            auth_token=auth,
            pending=max(1, records),
        )

    def check_waits(self) -> None:
        """Skip the state table when this invocation already knows the record has to wait."""
        state = self.invocation
        wait = pending_wait(
            state.waits, time.monotonic(), state.deadline, self.send_seconds, self.settings.clay_circuit_wait_seconds
        )
        if wait is not None:
            raise wait

    def claim(self, lead: Lead, lead_id: str) -> bool:
        """Claim the lead's dedupe mark for this invocation: True to send it, False when Clay has it already
        (skipped: counted and logged); raises the Wait when another copy is in flight or it is held."""
        # The claim's lease lasts as long as this invocation may: until then its batch record (or run) may come.
        lease = self.invocation.deadline - time.monotonic() + SAFETY_MARGIN_SECONDS
        claim = self.dedupe.claim(lead_id, claim_details(lead, self.invocation.batch.batch_id), lease)
        if claim is Claim.ALREADY_SENT:
            skipped(lead_id)
            return False
        if (wait := claim_wait(claim, lambda: self.dedupe.seconds_held(lead_id))) is not None:
            raise wait
        return True

    def reserve_budget(self) -> str:
        """One unit of today's budget, reserving for the rest of the batch; its key to release ('' uncapped).
        Raises the wait until the next UTC day when the budget is spent."""
        key = self.budget.reserve(self.invocation.pending)
        if key is None:
            self.invocation.waits.budget_wait = self.budget.seconds_until_reset()
            count("ClayBudgetExhausted")
            logger.warning("daily send budget is spent; leads wait for the next UTC day")
            raise Wait("budget_exhausted", self.invocation.waits.budget_wait)
        return key

    def open_circuit(self, message: str, extra: Mapping[str, object] | None = None) -> Wait:
        """Every later record of this invocation waits CLAY_CIRCUIT_WAIT_SECONDS too; the wait to raise."""
        self.invocation.waits.circuit_open = True
        count("ClayCircuitOpen")
        logger.error(message, extra=dict(extra or {}))
        return Wait("circuit_open", self.settings.clay_circuit_wait_seconds)

    def wait_out_throttle(self, retry_after: float | None, extra: Mapping[str, object]) -> None:
        """Clay said 429: sleep Retry-After when it fits this invocation, else raise the wait for it."""
        state = self.invocation
        count("ClayThrottled")
        throttle = throttle_wait(
            retry_after,
            time.monotonic(),
            state.deadline,
            self.send_seconds,
            self.settings.clay_max_throttle_wait_seconds,
        )
        if throttle.in_process:
            logger.info("Clay throttled; waiting Retry-After", extra={**extra, "retry_after": throttle.seconds})
            self.sleep(throttle.seconds)
            return
        state.waits.throttled_until = time.monotonic() + throttle.seconds
        raise Wait("throttled", throttle.seconds)

    # -- endings ---------------------------------------------------------------------------
    def dead_letter(self, record: QueueRecord, ending: DeadLetter) -> str:
        self.dead_letters.send_raw(
            record.body,
            attributes={"reason": ending.reason, "detail": ending.detail[:500], **origin_attributes(record)},
        )
        count("ClayDeadLettered", reason=ending.reason)
        logger.warning(
            "lead sent to the dead-letter queue", extra={"reason": ending.reason, "message_id": record.message_id}
        )
        return "dead_lettered"

    def hand_back(self, record: QueueRecord, wait: Wait) -> str:
        """The record waits in its queue; 'requeued' when a fresh copy took its place, else raises `wait`
        (the record is then reported as a batch item failure, its visibility already set)."""
        receives = record.receive_count
        # random jitter, not security: hence nosec B311
        seconds = record_delay(wait, receives, random.randint)  # nosec B311
        max_receives = self.settings.lead_queue_max_receive_count
        if self.lead_queue.hold(record.body, record.receipt_handle, receives, max_receives, seconds, not wait.failure):
            logger.info("waiting lead re-queued as a fresh message", extra={"reason": wait.reason})
            return "requeued"
        raise wait


def skipped(lead_id: str) -> None:
    count("ClaySkippedDuplicate")
    logger.info("lead already sent to Clay; skipped", extra={"lead_id": lead_id})
