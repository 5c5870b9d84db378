"""Sending one LeadQueue message to Clay (the record handler of queue_batch.process_batch).

A record ends in one of four ways:
- sent: Clay accepted the row (2xx); the batch record confirms its dedupe mark (Deduper).
- skipped: the lead was already sent within CLAY_DEDUPE_DAYS.
- dead-lettered: it can never succeed (malformed, invalid, over CLAY_MAX_PAYLOAD_BYTES, Clay's 400/413/422);
  it goes to LEAD_DLQ_URL at once with the reason and counts as processed.
- handed back: it must wait (rate, 429, daily budget, every webhook full or gone, a lost
  answer being held) or failed in a way that may pass (5xx, connection error). Its visibility
  is set to the wait and it is reported as a batch item failure. Waits do not cost the message
  its place: one that is about to reach maxReceiveCount is re-queued as a fresh copy instead,
  so waiting never dead-letters.
Anything held for a send (dedupe mark, budget unit, pool submission) is given back when
the row was not created; after a lost answer (a read timeout, the deadline), when Clay may have created it, the pool
submission and budget unit stay counted and the dedupe mark holds the lead (Deduper.hold).
Budget units and pool submissions are reserved for the rest of the batch at once; `finish`
returns the ones no row used, so each costs about two writes per batch.
`finish` also writes the batch's one `sent#` record (adapters/batch_records.py): which leads went to which
webhook and when, what the stale-lead sweeper and `clay-pipeline trace` read, and what confirms
each lead's dedupe claim, so a sent lead costs one dedupe write instead of two.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from botocore.exceptions import ClientError
from pydantic import ValidationError

from clay_pipeline import config
from clay_pipeline.adapters.batch_records import SENT_RECORD_TTL_SECONDS, SentBatch, SentBatches
from clay_pipeline.adapters.clay_webhook import ClayAnswer, ClayClient, Outcome
from clay_pipeline.adapters.queues import Queue, origin_attributes
from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.config import SenderSettings
from clay_pipeline.core.leads import Lead, describe_problems
from clay_pipeline.observability import count, level, logger, summarize
from clay_pipeline.queue_batch import QueueRecord
from clay_pipeline.services.intake import clay_payload, payload_problem
from clay_pipeline.services.sending_limits import (
    DAY_SECONDS,
    Claim,
    Clock,
    DailyBudget,
    Deduper,
    Pacer,
    Webhook,
    WebhookPool,
    utc_now,
)

SAFETY_MARGIN_SECONDS = 2.0  # left unused at the end of an invocation to report the batch
IN_FLIGHT_WAIT_SECONDS = 30
RATE_WAIT_SECONDS = 2
MAX_RETRY_DELAY_SECONDS = 900
LOST_ANSWER = "clay_answer_lost"  # hand-back reason while a lead is held after a lost answer


class HandBack(Exception):  # an outcome, not an error
    """The message stays in the queue and becomes visible again after `seconds`."""

    def __init__(self, reason: str, seconds: float, waiting: bool = True, ambiguous: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.seconds = max(0, math.ceil(seconds))
        self.waiting = waiting  # a wait, not a failure: must not push the message toward the DLQ
        self.ambiguous = ambiguous  # Clay may have created the row: keep the counted submission


class DeadLetter(Exception):  # an outcome, not an error
    """The message can never be sent as it is."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass
class Invocation:
    deadline: float  # time.monotonic() after which no new send starts
    urls: list[str]
    auth_token: str | None
    circuit_open: bool = False
    budget_wait: float = 0.0
    throttled_until: float = 0.0  # time.monotonic(); Clay said 429 for longer than this invocation has
    pending: int = 1  # records of the batch not yet processed, this one included: what to reserve for
    posting: int = 0  # records whose POST is in flight (they hold their pacing slot already)
    batch: SentBatch = field(default_factory=SentBatch)  # the leads sent in this invocation
    copies: dict[str, FirstCopy] = field(default_factory=dict)  # lead id -> its first copy in this batch
    copies_lock: threading.Lock = field(default_factory=threading.Lock)

    def first_copy(self, lead_id: str) -> tuple[FirstCopy, bool]:
        """The batch's first copy of this lead, and whether the caller's record is that copy."""
        with self.copies_lock:
            found = self.copies.get(lead_id)
            if found is not None:
                return found, False
            self.copies[lead_id] = first = FirstCopy()
            return first, True


@dataclass
class FirstCopy:
    """A lead queued twice can land in one batch: its later copies wait for the first one's outcome
    instead of meeting the first one's claim and coming back a visibility timeout later."""

    done: threading.Event = field(default_factory=threading.Event)
    in_clay: bool = False  # sent now, or found already sent


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


class ClaySender:
    def __init__(
        self,
        settings: SenderSettings,
        clay: ClayClient | None = None,
        clock: Clock = utc_now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        store = StateStore(settings.state_table)
        self.lead_queue = Queue(settings.lead_queue_url)
        self.dead_letters = Queue(settings.lead_dlq_url)
        self.clay = clay or ClayClient(
            settings.clay_request_timeout_seconds,
            settings.clay_retry_attempts,
            settings.clay_retry_backoff_seconds,
            pool_size=settings.clay_send_concurrency,
        )
        self.concurrency = settings.clay_send_concurrency
        self._pending_lock = threading.Lock()
        self._posts = threading.local()  # POSTs to Clay for the record a thread is sending (for its batch record)
        self.sent_batches = SentBatches(settings.state_table)
        # One write per lead: the claim. The batch record written when the batch ends confirms the sends.
        self.dedupe = Deduper(
            store,
            settings.clay_dedupe_days,
            hold_seconds=settings.clay_unknown_hold_seconds,
            confirmed_by=self.sent_batches.lists,
        )
        self.budget = DailyBudget(store, settings.clay_daily_send_budget, clock)
        self.pool = WebhookPool(store, settings.clay_webhook_submission_limit)
        self.pacer = Pacer(store, settings.clay_send_rate_per_second, sleep=sleep)
        self.sleep = sleep
        self.send_seconds = self.clay.longest_seconds  # every attempt timing out, plus its backoff
        self.invocation = Invocation(deadline=math.inf, urls=[], auth_token=None)

    def start(self, remaining_ms: int, records: int = 1) -> None:
        """Per invocation: the deadline, the batch size and the secrets (cached by Powertools, so rotation applies)."""
        urls = config.secret_list("CLAY_WEBHOOK_URLS")
        if not urls:
            logger.error("CLAY_WEBHOOK_URLS is not configured: leads wait in the queue until it is set")
        self.invocation = Invocation(
            deadline=time.monotonic() + remaining_ms / 1000 - SAFETY_MARGIN_SECONDS,
            urls=urls,
            auth_token=config.secret("CLAY_WEBHOOK_AUTH_TOKEN"),
            pending=max(1, records),
        )

    def finish(self) -> None:
        """End of the batch: budget units and pool submissions reserved for rows not sent go back, and the
        batch record of what was sent is written (one write)."""
        self.budget.return_unused()
        self.pool.return_unused()
        try:
            ttl = max(SENT_RECORD_TTL_SECONDS, self.settings.clay_dedupe_days * DAY_SECONDS)
            self.invocation.batch.record(self.sent_batches, ttl)
        except ClientError as error:
            # The leads are in Clay; without the record the stale-lead check misses them, and their dedupe
            # marks would read as unknown: confirm them one by one instead (what a send cost before).
            count("SentBatchNotRecorded")
            logger.warning("could not write the batch record of the leads sent", extra={"error": str(error)})
            self._confirm_each(list(self.invocation.batch.leads))

    def _confirm_each(self, lead_ids: list[str]) -> None:
        for lead_id in lead_ids:
            try:
                self.dedupe.confirm(lead_id)
            except ClientError as error:  # held, then sent once more: at most one extra row for this lead
                logger.warning("could not confirm a lead's send", extra={"lead_id": lead_id, "error": str(error)})

    # -- one record ------------------------------------------------------------------------
    def process(self, record: QueueRecord) -> str:
        try:
            return self._process(record)
        except DeadLetter as error:
            return self._dead_letter(record, error)
        except HandBack as back:
            return self._hand_back(record, back)
        finally:
            with self._pending_lock:
                self.invocation.pending = max(1, self.invocation.pending - 1)

    def _process(self, record: QueueRecord) -> str:
        lead = parse_lead(record.body)
        body = clay_payload(lead)
        if problem := payload_problem(body, self.settings.clay_max_payload_bytes):
            raise DeadLetter("oversize", problem)
        lead_id = str(lead.lead_id)
        copy, first = self.invocation.first_copy(lead_id)
        if not first:
            return self._later_copy(copy, lead_id)
        try:
            outcome = self._claim_and_send(record, lead, body, lead_id)
            copy.in_clay = outcome in ("sent", "duplicate")
            return outcome
        finally:
            copy.done.set()

    def _later_copy(self, first: FirstCopy, lead_id: str) -> str:
        # The first copy is already being processed on another thread (or was): its outcome decides.
        first.done.wait(max(0.0, self.invocation.deadline - time.monotonic()))
        if first.in_clay:
            count("ClaySkippedDuplicate")
            logger.info("lead queued twice in one batch; the first copy went to Clay", extra={"lead_id": lead_id})
            return "duplicate"
        raise HandBack("in_flight", IN_FLIGHT_WAIT_SECONDS)  # it did not reach Clay: this copy tries later

    def _claim_and_send(self, record: QueueRecord, lead: Lead, body: bytes, lead_id: str) -> str:
        self._check_waits()
        state = self.invocation
        # The claim's lease lasts as long as this invocation may: until then the batch record may still come.
        lease = state.deadline - time.monotonic() + SAFETY_MARGIN_SECONDS
        claim = self.dedupe.claim(lead_id, claim_details(lead, state.batch.batch_id), lease_seconds=lease)
        if claim is Claim.ALREADY_SENT:
            count("ClaySkippedDuplicate")
            logger.info("lead already sent to Clay; skipped", extra={"lead_id": lead_id})
            return "duplicate"
        if claim is Claim.IN_FLIGHT:
            raise HandBack("in_flight", IN_FLIGHT_WAIT_SECONDS)
        if claim is Claim.HELD:
            raise HandBack(LOST_ANSWER, self.dedupe.seconds_held(lead_id))
        budget_key: str | None = None
        self._posts.count = 0  # this record's POSTs: records are sent concurrently, one thread each
        try:
            budget_key = self.budget.reserve(self.invocation.pending)
            if budget_key is None:
                self.invocation.budget_wait = self.budget.seconds_until_reset()
                count("ClayBudgetExhausted")
                logger.warning("daily send budget is spent; leads wait for the next UTC day")
                raise HandBack("budget_exhausted", self.invocation.budget_wait)
            webhook = self._send(body)
        except BaseException as error:
            ambiguous = getattr(error, "ambiguous", False)  # Clay may have created the row
            if budget_key and not ambiguous:
                self.budget.release(budget_key)
            if ambiguous and self.dedupe.hold(lead_id, hold := self.settings.clay_unknown_hold_seconds):
                count("ClaySendUnknown")
                logger.warning(
                    "Clay's answer was lost: the lead is held, then sent once more unless marked sent",
                    extra={"lead_id": lead_id, "hold_seconds": hold},
                )
                raise HandBack(LOST_ANSWER, hold) from None
            self.dedupe.release(lead_id)
            raise
        kept = body.decode() if self.settings.stale_requeue else None  # the batch record confirms the send
        state.batch.add(lead_id, webhook.index, record.receive_count, self._posts.count, kept)
        count("ClaySent")
        level("ClayWebhookUsage", webhook.submissions, webhook=str(webhook.index))
        summarize("leads sent to Clay", lead_id, {"webhook_index": webhook.index})  # one line per batch
        return "sent"

    def _post(self, webhook: Webhook, body: bytes) -> ClayAnswer:
        state = self.invocation
        with self._pending_lock:
            state.posting += 1
        try:
            answer = self.clay.post(webhook.url, body, state.auth_token, deadline=state.deadline)
            self._posts.count = getattr(self._posts, "count", 0) + 1 + answer.retries
            return answer
        finally:
            with self._pending_lock:
                state.posting -= 1

    def _check_waits(self) -> None:
        """Skip the state table when this invocation already knows the message has to wait."""
        state = self.invocation
        if state.budget_wait:
            raise HandBack("budget_exhausted", state.budget_wait)
        if state.circuit_open:
            raise HandBack("circuit_open", self.settings.clay_circuit_wait_seconds)
        now = time.monotonic()
        if state.throttled_until > now:
            raise HandBack("throttled", state.throttled_until - now)
        if now + self.send_seconds > state.deadline:
            raise HandBack("out_of_time", 0)

    def _send(self, body: bytes) -> Webhook:
        """POST to the first usable webhook, moving on when one is gone and waiting out short 429s."""
        state = self.invocation
        while True:
            webhook = self.pool.acquire(state.urls, state.pending)
            if webhook is None:
                state.circuit_open = True
                count("ClayCircuitOpen")
                logger.error("every Clay webhook is full or gone: circuit open, leads wait in the queue")
                raise HandBack("circuit_open", self.settings.clay_circuit_wait_seconds)
            try:
                # Slots for the batch's records that are not posting yet: one pacing write covers them.
                if not self.pacer.acquire(state.deadline - self.send_seconds, wanted=state.pending - state.posting):
                    raise HandBack("rate_wait", RATE_WAIT_SECONDS)
                answer = self._post(webhook, body)
            except BaseException:
                self.pool.release(webhook)
                raise
            if answer.retries:
                count("ClayRetried", answer.retries)
            if answer.outcome is Outcome.ACCEPTED:
                return webhook
            if not answer.ambiguous:
                self.pool.release(webhook)
            self._handle_refusal(webhook, answer)

    def _handle_refusal(self, webhook: Webhook, answer: ClayAnswer) -> None:
        """Returns when the send should be tried again now; raises otherwise."""
        extra = {"webhook_index": webhook.index, "status": answer.status, "reason": answer.reason}
        if answer.outcome is Outcome.GONE:
            self.pool.retire(webhook, answer.status)
            count("ClayWebhookGone")  # what the alarm watches (service dimension only)
            count("ClayWebhookGone", webhook=str(webhook.index))
            logger.error("Clay webhook is gone; it is retired and the next one is used", extra=extra)
            return
        if answer.outcome is Outcome.THROTTLED:
            self._wait_out_throttle(answer.retry_after, extra)
            return
        if answer.outcome is Outcome.PERMANENT:
            raise DeadLetter(answer.reason, f"Clay answered {answer.status}")
        count("ClayRetried")
        logger.warning("Clay send failed; the message goes back to the queue", extra=extra)
        raise HandBack(answer.reason, 0, waiting=False, ambiguous=answer.ambiguous)

    def _wait_out_throttle(self, retry_after: float | None, extra: Mapping[str, object]) -> None:
        """Clay said 429: sleep Retry-After when it fits this invocation, else hand the message back for it."""
        state = self.invocation
        count("ClayThrottled")
        wait = retry_after if retry_after is not None else RATE_WAIT_SECONDS
        fits = time.monotonic() + wait + self.send_seconds <= state.deadline
        if fits and wait <= self.settings.clay_max_throttle_wait_seconds:
            logger.info("Clay throttled; waiting Retry-After", extra={**extra, "retry_after": wait})
            self.sleep(wait)
            return
        state.throttled_until = time.monotonic() + wait
        raise HandBack("throttled", wait)

    # -- endings ---------------------------------------------------------------------------
    def _dead_letter(self, record: QueueRecord, error: DeadLetter) -> str:
        self.dead_letters.send_raw(
            record.body,
            attributes={
                "reason": error.reason,
                "detail": error.detail[:500],
                **origin_attributes(record),
            },
        )
        count("ClayDeadLettered", reason=error.reason)
        logger.warning(
            "lead sent to the dead-letter queue", extra={"reason": error.reason, "message_id": record.message_id}
        )
        return "dead_lettered"

    def _hand_back(self, record: QueueRecord, back: HandBack) -> str:
        receives = record.receive_count
        seconds = back.seconds if back.waiting else self._retry_delay(receives)
        max_receives = self.settings.lead_queue_max_receive_count
        if self.lead_queue.hold(record.body, record.receipt_handle, receives, max_receives, seconds, back.waiting):
            logger.info("waiting lead re-queued as a fresh message", extra={"reason": back.reason})
            return "requeued"
        raise back

    @staticmethod
    def _retry_delay(receives: int) -> int:
        """Exponential backoff with jitter between receives of a message whose send failed."""
        # random jitter, not security: hence nosec B311
        ceiling = min(MAX_RETRY_DELAY_SECONDS, 10 * 2 ** min(receives - 1, 10))
        return random.randint(ceiling // 2, ceiling)  # nosec B311
