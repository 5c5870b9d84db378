"""Sending one LeadQueue message to a Clay table webhook (the record handler of queue_batch.process_batch).

A record ends in one of four ways:
- sent: Clay accepted the row (2xx); the batch record confirms its dedupe mark (Deduper).
- skipped: the lead was already sent within CLAY_DEDUPE_DAYS.
- dead-lettered: it can never succeed (core/outcomes.py's DeadLetter);
- waiting: it goes back to the queue for a while (core/outcomes.py's Wait; lead_sending.py says how).
What Clay's answer means is core/sending.py's (classify, webhook_refusal, throttle_wait).
Anything held for a send (dedupe mark, budget unit, pool submission) is given back when
the row was not created; after a lost answer (a read timeout, the deadline), when Clay may have created it, the pool
submission and budget unit stay counted and the dedupe mark holds the lead (Deduper.hold).
Budget units and pool submissions are reserved for the rest of the batch at once; `finish`
returns the ones no row used, so each costs about two writes per batch.
`finish` also writes the batch's one `sent#` record (batch_records.SentBatch): which leads went to which
webhook and when, what the stale-lead sweeper and `clay-pipeline trace` read, and what confirms
each lead's dedupe claim, so a sent lead costs one dedupe write instead of two.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from clay_pipeline import config
from clay_pipeline.adapters.batch_records import SENT_RECORD_TTL_SECONDS, SentBatches
from clay_pipeline.adapters.clay_webhook import ClayClient
from clay_pipeline.adapters.queues import Queue
from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.config import SenderSettings
from clay_pipeline.core.leads import Lead
from clay_pipeline.core.outcomes import DeadLetter, Wait
from clay_pipeline.core.sending import (
    DAY_SECONDS,
    IN_FLIGHT_WAIT_SECONDS,
    LOST_ANSWER,
    RATE_WAIT_SECONDS,
    ClayAnswer,
    Step,
    WebhookOutcome,
    webhook_refusal,
)
from clay_pipeline.observability import count, level, logger, summarize
from clay_pipeline.queue_batch import QueueRecord
from clay_pipeline.services.intake import clay_payload, payload_problem
from clay_pipeline.services.lead_sending import LeadSending, parse_lead
from clay_pipeline.services.sending_limits import Clock, Webhook, WebhookPool, utc_now


@dataclass
class FirstCopy:
    """A lead queued twice can land in one batch: its later copies wait for the first one's outcome
    instead of meeting the first one's claim and coming back a visibility timeout later."""

    done: threading.Event = field(default_factory=threading.Event)
    in_clay: bool = False  # sent now, or found already sent


class ClaySender:
    def __init__(
        self,
        settings: SenderSettings,
        clay: ClayClient | None = None,
        clock: Clock = utc_now,
        sleep: Callable[[float], None] = time.sleep,
        store: StateStore | None = None,
        sent_batches: SentBatches | None = None,
        queue: Callable[[str], Queue] = Queue,
    ) -> None:
        """`store` (the state table), `sent_batches` and `queue` (a queue by its URL) default to the AWS adapters."""
        self.settings = settings
        store = store or StateStore(settings.state_table)
        self.clay = clay or ClayClient(
            settings.clay_request_timeout_seconds,
            settings.clay_retry_attempts,
            settings.clay_retry_backoff_seconds,
            pool_size=settings.clay_send_concurrency,
        )
        self.concurrency = settings.clay_send_concurrency
        self.sent_batches = sent_batches or SentBatches(settings.state_table)
        # One write per lead: the claim. The batch record written when the batch ends confirms the sends.
        self.sending = LeadSending(
            settings,
            self.sent_batches.lists,
            self.clay.longest_seconds,
            pacing_rate=settings.clay_send_rate_per_second,
            clock=clock,
            sleep=sleep,
            store=store,
            queue=queue,
        )
        self.webhooks = TableWebhooks(
            self.sending, self.clay, WebhookPool(store, settings.clay_webhook_submission_limit)
        )
        self._lock = threading.Lock()  # the batch's pending count and its first copies: records are sent concurrently
        self._copies: dict[str, FirstCopy] = {}  # lead id -> its first copy in this batch

    def start(self, remaining_ms: int, records: int = 1) -> None:
        """Per invocation: the deadline, the batch size and the secrets (cached by Powertools, so rotation applies)."""
        urls = config.secret_list("CLAY_WEBHOOK_URLS")
        if not urls:
            logger.error("CLAY_WEBHOOK_URLS is not configured: leads wait in the queue until it is set")
        self.sending.begin(remaining_ms, records, urls, config.secret("CLAY_WEBHOOK_AUTH_TOKEN"))
        self._copies = {}

    def finish(self) -> None:
        """End of the batch: budget units and pool submissions reserved for rows not sent go back, and the
        batch record of what was sent is written (one write)."""
        self.sending.budget.return_unused()
        self.webhooks.pool.return_unused()
        batch = self.sending.invocation.batch
        try:
            batch.record(self.sent_batches, max(SENT_RECORD_TTL_SECONDS, self.settings.clay_dedupe_days * DAY_SECONDS))
        except ClientError as error:
            # The leads are in Clay; without the record the stale-lead check misses them, and their dedupe
            # marks would read as unknown: confirm them one by one instead (what a send cost before).
            count("SentBatchNotRecorded")
            logger.warning("could not write the batch record of the leads sent", extra={"error": str(error)})
            for lead_id in list(batch.leads):
                try:
                    self.sending.dedupe.confirm(lead_id)
                except ClientError as failed:  # held, then sent once more: at most one extra row for this lead
                    logger.warning("could not confirm a lead's send", extra={"lead_id": lead_id, "error": str(failed)})

    # -- one record ------------------------------------------------------------------------
    def process(self, record: QueueRecord) -> str:
        try:
            return self._process(record)
        except DeadLetter as ending:
            return self.sending.dead_letter(record, ending)
        except Wait as wait:
            return self.sending.hand_back(record, wait)
        finally:
            with self._lock:
                self.sending.invocation.pending = max(1, self.sending.invocation.pending - 1)

    def _process(self, record: QueueRecord) -> str:
        lead = parse_lead(record.body)
        body = clay_payload(lead)
        if problem := payload_problem(body, self.settings.clay_max_payload_bytes):
            raise DeadLetter("oversize", problem)
        lead_id = str(lead.lead_id)
        with self._lock:
            copy = self._copies.get(lead_id)
            first = copy is None
            if copy is None:
                copy = self._copies[lead_id] = FirstCopy()
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
        first.done.wait(max(0.0, self.sending.invocation.deadline - time.monotonic()))
        if first.in_clay:
            count("ClaySkippedDuplicate")
            logger.info("lead queued twice in one batch; the first copy went to Clay", extra={"lead_id": lead_id})
            return "duplicate"
        raise Wait("in_flight", IN_FLIGHT_WAIT_SECONDS)  # it did not reach Clay: this copy tries later

    def _claim_and_send(self, record: QueueRecord, lead: Lead, body: bytes, lead_id: str) -> str:
        self.sending.check_waits()
        if not self.sending.claim(lead, lead_id):
            return "duplicate"
        budget_key: str | None = None
        try:
            budget_key = self.sending.reserve_budget()
            webhook, posts = self.webhooks.send(body)
        except BaseException as error:
            self._give_back(lead_id, budget_key, ambiguous=getattr(error, "ambiguous", False))
            raise
        kept = body.decode() if self.settings.stale_requeue else None  # the batch record confirms the send
        self.sending.invocation.batch.add(lead_id, webhook.index, record.receive_count, posts, kept)
        count("ClaySent")
        level("ClayWebhookUsage", webhook.submissions, webhook=str(webhook.index))
        summarize("leads sent to Clay", lead_id, {"webhook_index": webhook.index})  # one line per batch
        return "sent"

    def _give_back(self, lead_id: str, budget_key: str | None, ambiguous: bool) -> None:
        """The send did not happen (release what it held), or its answer was lost (`ambiguous`: Clay may have
        created the row): then the budget unit stays counted and the lead is held, unless dedupe is off."""
        sending = self.sending
        if budget_key and not ambiguous:
            sending.budget.release(budget_key)
        if ambiguous and sending.dedupe.hold(lead_id, hold := self.settings.clay_unknown_hold_seconds):
            count("ClaySendUnknown")
            logger.warning(
                "Clay's answer was lost: the lead is held, then sent once more unless marked sent",
                extra={"lead_id": lead_id, "hold_seconds": hold},
            )
            raise Wait(LOST_ANSWER, hold) from None
        sending.dedupe.release(lead_id)


class TableWebhooks:
    """The table path's webhooks (CLAY_WEBHOOK_URLS): one row POSTed to the first usable one, at its pacing slot."""

    def __init__(self, sending: LeadSending, clay: ClayClient, pool: WebhookPool) -> None:
        self.sending = sending
        self.clay = clay
        self.pool = pool
        self._lock = threading.Lock()  # the invocation's count of POSTs in flight: records are sent concurrently

    def send(self, body: bytes) -> tuple[Webhook, int]:
        """POST to the first usable webhook, moving on when one is gone and waiting out short 429s: the webhook
        that took the row, and the POSTs it took (for the batch record)."""
        state = self.sending.invocation
        posts = 0
        while True:
            webhook = self.pool.acquire(state.urls, state.pending)
            if webhook is None:
                raise self.sending.open_circuit(
                    "every Clay webhook is full or gone: circuit open, leads wait in the queue"
                )
            try:
                # Slots for the batch's records that are not posting yet: one pacing write covers them.
                deadline = state.deadline - self.sending.send_seconds
                if not self.sending.pacer.acquire(deadline, wanted=state.pending - state.posting):
                    raise Wait("rate_wait", RATE_WAIT_SECONDS)
                answer = self._post(webhook, body)
                posts += 1 + answer.retries
            except BaseException:
                self.pool.release(webhook)
                raise
            if answer.retries:
                count("ClayRetried", answer.retries)
            if answer.outcome is WebhookOutcome.ACCEPTED:
                return webhook, posts
            if not answer.ambiguous:
                self.pool.release(webhook)
            self._handle_refusal(webhook, answer)

    def _post(self, webhook: Webhook, body: bytes) -> ClayAnswer:
        state = self.sending.invocation
        with self._lock:
            state.posting += 1
        try:
            return self.clay.post(webhook.url, body, state.auth_token, deadline=state.deadline)
        finally:
            with self._lock:
                state.posting -= 1

    def _handle_refusal(self, webhook: Webhook, answer: ClayAnswer) -> None:
        """Returns when the send should be tried again now; raises the record's ending otherwise."""
        extra = {"webhook_index": webhook.index, "status": answer.status, "reason": answer.reason}
        refusal = webhook_refusal(answer)
        if refusal is Step.NEXT_WEBHOOK:
            self.pool.retire(webhook, answer.status)
            count("ClayWebhookGone")  # what the alarm watches (service dimension only)
            count("ClayWebhookGone", webhook=str(webhook.index))
            logger.error("Clay webhook is gone; it is retired and the next one is used", extra=extra)
            return
        if refusal is Step.WAIT_OUT_THROTTLE:
            self.sending.wait_out_throttle(answer.retry_after, extra)
            return
        if isinstance(refusal, Wait):
            count("ClayRetried")
            logger.warning("Clay send failed; the message goes back to the queue", extra=extra)
        raise refusal
