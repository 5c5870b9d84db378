"""Routing one RoutingQueue batch: score, choose destinations, deliver what each lead is owed.

For each record: read the message (core/routing_message.py: the lead validated, icp_score and tier filled
in when Clay sent none), claim the lead and work out what each chosen destination is owed (services/claims.py
and core/routing_plan.py), deliver that (services/delivery.py), record it and end the record
(core/routing_outcome.py). `LeadRouter` is the cold-start part (settings, rules, destinations, threads);
`LeadRouter.start` returns the invocation's `RoutingBatch`, which holds everything of one batch.

Two callbacks of one lead never deliver concurrently: the second finds the lease held and waits in the queue
(visibility hand-back, never toward the DLQ). Within a batch, only the newest callback of each lead is
routed; older ones are superseded.

A delivery whose answer is lost has an unknown outcome: the request went out in full and no answer came (a
read timeout, the request's deadline), or the invocation ended (crash, Lambda timeout, a failed ledger
write) between sending and recording. For a destination whose UNKNOWN_OUTCOME_POLICIES is "hold" (outreach,
nurture and Zapier by default: core/rules.py) such a delivery is never sent again automatically. Its intent
is written on the lead's item before the send (LeadLedger.record_intent, or in the claim), so a later claim
that finds an intent nobody completed knows what may have gone out; the ledger then marks the destination
`unknown` (DeliveryUnknown metric and alarm, shown by `trace`) until an operator settles it
(`clay-pipeline settle LEAD DESTINATION --delivered|--resend`). A request that never left (DNS, connection
refused, connect timeout) is retried. "resend" destinations (Slack by default, HubSpot always: its upsert by
email is idempotent) are sent again after a lost answer or a lapsed lease.

A destination an operator paused (pause.py: `clay-pipeline destination pause hubspot`) is not sent to: the
lead's other destinations are delivered and recorded, and the record waits in the queue (visibility
hand-back, never toward the DLQ) until the switch is cleared; its next receive finds the others in the
ledger and sends only the paused one. A lead whose every chosen destination is paused waits without
claiming its lease (one write, on its first receive only).

Endings of a record (core/routing_outcome.py), and besides them:
- the lead's lease is held by another invocation, or a destination it owes is paused: back to the queue for
  a while (a fresh copy near maxReceiveCount), never toward the DLQ;
- a malformed message: ROUTING_DLQ_URL with the reason, and processed;
- a lead whose values break reading or claiming it (unroutable_lead): ROUTING_DLQ_URL at once, alone, with
  the exception; the batch's other records go on. A dependency failure or an error while delivering: back
  to the queue, and on its last receive ROUTING_DLQ_URL with the reason (dependency_failed, routing_failed)
  instead of SQS's redrive, which carries none.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clay_pipeline.adapters.aws_failures import is_dependency_failure
from clay_pipeline.adapters.leads_table import LeadsTable
from clay_pipeline.adapters.ledger import LeadLedger
from clay_pipeline.adapters.queues import Queue, origin_attributes
from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.adapters.webhooks import MIN_ATTEMPT_SECONDS, HttpClient
from clay_pipeline.config import RouterSettings
from clay_pipeline.core.deliveries import Status
from clay_pipeline.core.json_text import dump_json
from clay_pipeline.core.outcomes import DeadLetter, Wait
from clay_pipeline.core.policies import Busy
from clay_pipeline.core.routing_message import RoutingMessage, newest_per_lead, parse_message
from clay_pipeline.core.routing_outcome import Outcome, build_outcome, ending, retryable_summary
from clay_pipeline.core.routing_plan import LEADS_TABLE_DESTINATION, Attempt, RoutingConfig
from clay_pipeline.observability import count, level, logger, summarize
from clay_pipeline.queue_batch import QueueRecord
from clay_pipeline.services.claims import LeadClaims
from clay_pipeline.services.delivery import BatchDeliveries, DeliveryPools
from clay_pipeline.services.destinations import Destinations
from clay_pipeline.services.pause import DestinationSwitch

SAFETY_MARGIN_SECONDS = 2.0  # left unused at the end of an invocation to report the batch
IN_FLIGHT_WAIT_SECONDS = 10  # per receive, at most until the other lease lapses
MAX_WAIT_SECONDS = 900  # SQS's longest delay for the fresh copy near maxReceiveCount


class Unroutable(Exception):
    """Reading or claiming the lead raised: its values broke something, or a dependency failed meanwhile.

    Not a DeadLetter: what it becomes depends on the cause (RoutingBatch._isolate): a lead's own values go
    to the DLQ at once, a dependency failure waits in the queue until its last receive."""

    def __init__(self, error: Exception) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.error = error


@dataclass(frozen=True)
class RouterStores:
    """Where the router keeps state: the lead's item (its ledger and outcome), its two queues, the pause switch."""

    ledger: LeadLedger
    leads: LeadsTable
    routing_queue: Queue
    dead_letters: Queue
    state: StateStore

    @classmethod
    def from_settings(cls, settings: RouterSettings) -> RouterStores:
        return cls(
            LeadLedger(settings.leads_table, settings.delivery_lease_seconds),
            LeadsTable(settings.leads_table),
            Queue(settings.routing_queue_url),
            Queue(settings.routing_dlq_url),
            StateStore(settings.state_table),
        )


class LeadRouter:
    """What lasts across invocations: settings, rules (ConfigError at cold start), destinations, threads.

    `stores`: where it keeps state (default: the settings' tables and queues)."""

    def __init__(
        self,
        settings: RouterSettings,
        http: HttpClient | None = None,
        sleep: Callable[[float], None] = time.sleep,
        stores: RouterStores | None = None,
    ) -> None:
        self.settings = settings
        self.config = RoutingConfig.from_settings(  # ConfigError at cold start for invalid rules or policies
            settings.routing_rules,
            settings.delivery_policies,
            settings.routing_required_fields,
            settings.unknown_outcome_policies,
            settings.delivery_mark_days,
            salesforce=bool(settings.salesforce_login_url),  # its default rule only when it may be on
        )
        stores = stores or RouterStores.from_settings(settings)
        self.ledger = stores.ledger
        self.leads = stores.leads
        self.endings = RecordEndings(settings, stores.routing_queue, stores.dead_letters, self.ledger)
        self.switch = DestinationSwitch(stores.state, settings.destination_pause_cache_seconds)
        self.destinations = Destinations.from_settings(settings, http or HttpClient(), sleep)
        self.webhooks = self.destinations.webhooks
        self.crms = self.destinations.crms
        self.pools = DeliveryPools.for_destinations(self.destinations)
        self._announced_off: set[str] = set()

    def start(self, records: Iterable[QueueRecord], remaining_ms: int) -> RoutingBatch:
        """The invocation's batch: its deadline, which destinations are configured and paused now, each lead's
        claim and the batch's sends.

        Reading every destination's setting here, on the invocation's thread, also warms the secret cache
        before the delivery threads read it. The pause switch is read at most once.
        """
        deadline = time.monotonic() + remaining_ms / 1000 - SAFETY_MARGIN_SECONDS
        enabled = self.destinations.configured() | {LEADS_TABLE_DESTINATION}
        for name in sorted(self.destinations.names - enabled - self._announced_off):
            logger.info("destination is off: its URL or token is not configured", extra={"destination": name})
            self._announced_off.add(name)
        paused = self.switch.paused() & enabled
        for name in paused:
            level("DestinationPaused", 1, destination=name)
        claims = LeadClaims(self.config, self.ledger, self.leads, self.destinations, enabled, paused)
        deliveries = BatchDeliveries(self.destinations, self.config, self.pools, self.switch, deadline, claims.pause)
        batch = RoutingBatch(self, claims, deliveries, deadline)
        batch.prepare(list(records))
        return batch


class RoutingBatch:
    """One invocation's batch: each record's attempt, and what reading or claiming a lead raised."""

    def __init__(self, router: LeadRouter, claims: LeadClaims, deliveries: BatchDeliveries, deadline: float) -> None:
        self.router = router
        self.settings = router.settings
        self.claims = claims
        self.deliveries = deliveries
        self.endings = router.endings
        self.deadline = deadline
        self._attempts: dict[str, Attempt] = {}  # by SQS message id
        self._unroutable: dict[str, Exception] = {}  # by SQS message id: reading or claiming it raised

    def prepare(self, records: list[QueueRecord]) -> None:
        """Claim every lead of the batch (the newest callback of each) and make the batch's sends."""
        messages: list[tuple[str, RoutingMessage]] = []
        for record in records:
            try:
                messages.append((record.message_id, parse_message(record.body, datetime.now(UTC))))
            except DeadLetter:
                continue  # dead-lettered by process()
            except Exception as error:  # one lead's values must not fail the batch: process() isolates it
                self._unroutable[record.message_id] = error
        selection = newest_per_lead(messages)
        self._unroutable |= selection.failed
        self._attempts = {rid: Attempt.superseded_by_newer(message) for rid, message in selection.superseded.items()}
        for message in selection.newest.values():
            older = [other for other in selection.superseded.values() if other.lead_key == message.lead_key]
            self.claims.register(message, older)
        for record_id, message in selection.newest.items():
            try:
                self._attempts[record_id] = self.claims.claim(message)
            except Exception as error:  # a claimed lease lapses by itself (DELIVERY_LEASE_SECONDS)
                self._unroutable[record_id] = error
        crms = frozenset(self.router.crms) & self.claims.enabled
        self.deliveries.send(self._attempts, crms)

    # -- one record ------------------------------------------------------------------------
    def process(self, record: QueueRecord) -> str:
        """Route one record. What it raises stays with it: a lead that cannot be routed is dead-lettered alone,
        with the reason, and the batch's other records are routed (see _isolate). Wait: it goes back to the
        queue, after the Wait's delay_seconds (already set on the message; 0: the queue's visibility timeout)."""
        try:
            return self._process(record)
        except Wait:
            raise
        except Exception as error:
            return self._isolate(record, error)

    def _process(self, record: QueueRecord) -> str:
        if (unroutable := self._unroutable.pop(record.message_id, None)) is not None:
            raise Unroutable(unroutable)  # what prepare() met reading or claiming this lead
        attempt = self._attempts.pop(record.message_id, None)
        if attempt is None:  # a message prepare() could not parse, or a record it did not see
            attempt = self._claim_late(record)
            if attempt is None:
                return "dead_lettered"
        if attempt.superseded:
            return self._supersede(attempt)
        if isinstance(attempt.claim, Busy):
            return self.endings.wait_for_lease(record, attempt.claim)
        if attempt.claim is None and attempt.paused:
            return self._wait_for_resume(record, attempt)
        # No deadline check here: prepare() made this record's sends already, so what went out is recorded
        # whatever time is left (a send not started for want of time is recorded as retryable, its lease freed).
        outcome = self._route(record, attempt)
        if outcome.held_elsewhere:  # nothing chosen now, but a pause held deliveries for the lead: make them
            attempt = self.claims.claim(attempt.message, carried=outcome.held_elsewhere)
            if isinstance(attempt.claim, Busy):
                return self.endings.wait_for_lease(record, attempt.claim)
            if attempt.claim is None:
                return self._wait_for_resume(record, attempt)
            outcome = self._route(record, attempt)
        return self._finish(record, attempt, outcome)

    def _claim_late(self, record: QueueRecord) -> Attempt | None:
        """Read and claim a record prepare() did not (None: dead-lettered as malformed). Nothing is claimed
        without an attempt's time left: the record waits in the queue, untouched."""
        try:
            message = parse_message(record.body, datetime.now(UTC))
        except DeadLetter as error:
            self.endings.dead_letter(record, error, {})
            return None
        except Exception as error:
            raise Unroutable(error) from error
        if self.deadline - time.monotonic() < MIN_ATTEMPT_SECONDS:
            raise Wait("out of time before routing", failure=True)
        try:
            self.claims.register(message)
            return self.claims.claim(message)
        except Exception as error:
            raise Unroutable(error) from error

    def _isolate(self, record: QueueRecord, error: Exception) -> str:
        """A record that raised. Reading or claiming the lead failed on its own values (Unroutable): RoutingDLQ
        now, with the reason, since every receive would fail the same way. A dependency failure (DynamoDB,
        SQS) or an error while delivering: back to the queue, and on the last receive RoutingDLQ with the
        reason rather than SQS's redrive, which carries none. What was delivered is in the ledger already."""
        cause = error.error if isinstance(error, Unroutable) else error
        dependency = is_dependency_failure(cause)
        if dependency or not isinstance(error, Unroutable):
            if record.receive_count < self.settings.routing_queue_max_receive_count:
                raise cause
            reason = "dependency_failed" if dependency else "routing_failed"
        else:
            reason = "unroutable_lead"
        logger.exception("the lead cannot be routed", extra={"reason": reason, "message_id": record.message_id})
        self.endings.dead_letter(record, DeadLetter(reason, f"{type(cause).__name__}: {cause}"), {})
        return "dead_lettered"

    def _wait_for_resume(self, record: QueueRecord, attempt: Attempt) -> str:
        """Every delivery the lead is owed now is paused: no claim; the mark of the held ones accepts the callbacks."""
        accepting = self.claims.take_accepting(attempt.message.lead_key)
        return self.endings.wait_for_resume(record, attempt, accepting=accepting)

    def _supersede(self, attempt: Attempt) -> str:
        self.claims.supersede(attempt)
        count("CallbackSuperseded")
        logger.info("an older callback of the lead was superseded", extra={"lead_key": attempt.message.lead_key})
        return "superseded"

    def _route(self, record: QueueRecord, attempt: Attempt) -> Outcome:
        """Deliver what is owed, then record deliveries and outcome and free the lease (one write)."""
        sent: dict[str, Any] = {}
        try:
            self.deliveries.collect(record.message_id, attempt, sent)
        except BaseException:
            self.claims.record(attempt, sent, None)  # what was delivered is not sent again by the retry
            raise
        outcome = build_outcome(attempt, sent, self.claims.enabled)
        self.claims.record(attempt, sent, outcome)
        return outcome

    def _finish(self, record: QueueRecord, attempt: Attempt, outcome: Outcome) -> str:
        end = ending(outcome, record.receive_count, self.settings.routing_queue_max_receive_count)
        lead_key, tier = outcome.message.lead_key, {"tier": outcome.message.lead["tier"]}
        extra = {"lead_key": lead_key, "routing_status": outcome.routing_status, **tier}
        if end == "skipped":  # one line per batch for the leads skipped, one for those routed
            count("LeadSkipped")
            summarize("leads skipped", lead_key, {**tier, "skipped_reason": outcome.skipped_reason})
        elif end == "routed":
            count("LeadRouted")
            summarize("leads routed", lead_key, {**tier, "destinations": outcome.destination_statuses()})
        elif end == "unknown":  # nothing left to retry: what is unknown waits for `clay-pipeline settle`
            logger.warning("lead routed, some outcomes unknown", extra={**extra, **outcome.destination_statuses()})
        elif end == "paused":  # the rest is delivered and recorded: only the paused destinations wait
            return self.endings.wait_for_resume(record, attempt, tuple(outcome.failures(Status.PAUSED)))
        elif isinstance(end, Wait):
            logger.warning("lead goes back to the queue", extra={**extra, "failures": retryable_summary(outcome)})
            raise end
        elif isinstance(end, DeadLetter):
            self.endings.dead_letter(record, end, outcome.destination_statuses())
            return "dead_lettered"
        return str(end)


@dataclass(frozen=True)
class RecordEndings:
    """A record that waits in RoutingQueue (never toward the DLQ), or goes to RoutingDLQ with the reason."""

    settings: RouterSettings
    routing_queue: Queue
    dead_letters: Queue
    ledger: LeadLedger

    def wait_for_lease(self, record: QueueRecord, busy: Busy) -> str:
        """Another invocation is routing this lead: wait in the queue a little, never toward the DLQ."""
        count("RoutingLeaseBusy")
        seconds = min(busy.seconds, IN_FLIGHT_WAIT_SECONDS * record.receive_count)
        return self._wait(record, seconds, "in_flight: another invocation is routing this lead")

    def wait_for_resume(
        self, record: QueueRecord, attempt: Attempt, paused_now: tuple[str, ...] = (), accepting: Iterable[str] = ()
    ) -> str:
        """A destination the lead is owed is paused: wait in the queue, longer with each receive, never the DLQ.

        `paused_now`: destinations that asked for the pause in this attempt (HubSpot's daily limit). `accepting`:
        callback ids whose claims the mark of the held deliveries (first receive only) completes.
        """
        held = attempt.held or paused_now
        for name in held:
            count("DeliveryHeld", destination=name)
        logger.info(
            "delivery held: destination paused", extra={"lead_key": attempt.message.lead_key, "destinations": held}
        )
        if attempt.lease is None and record.receive_count == 1:  # the claimed path marks it in its own write
            self.ledger.mark_held(attempt.message.lead_key, held, attempt.message.received_at, accepting)
        seconds = min(MAX_WAIT_SECONDS, self.settings.destination_pause_wait_seconds * record.receive_count)
        return self._wait(record, seconds, f"paused: {', '.join(held)}")

    def _wait(self, record: QueueRecord, seconds: int, reason: str) -> str:
        """Out of sight for `seconds` (Queue.hold); a wait is not a failure, so near maxReceiveCount the record is
        re-queued as a fresh copy and done. Otherwise Wait(reason, seconds): the record stays, its visibility
        already set to `seconds`, which the Wait carries (core/outcomes.Wait.delay_seconds)."""
        max_receives = self.settings.routing_queue_max_receive_count
        if self.routing_queue.hold(record.body, record.receipt_handle, record.receive_count, max_receives, seconds):
            return "requeued"
        raise Wait(reason, seconds)

    def dead_letter(self, record: QueueRecord, dead: DeadLetter, statuses: dict[str, str]) -> None:
        # The body is kept as-is so a redrive replays it; the lead's ledger keeps it from repeating sends.
        self.dead_letters.send_raw(
            record.body,
            attributes={
                "reason": dead.reason,
                "detail": dead.detail[:1000],
                "destinations": dump_json(statuses) if statuses else "",
                **origin_attributes(record),
            },
        )
        count("RouterDeadLettered", reason=dead.reason)
        logger.warning("lead sent to the routing DLQ", extra={"reason": dead.reason, "message_id": record.message_id})
