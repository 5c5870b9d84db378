"""Routing one RoutingQueue batch: score, choose destinations, deliver each exactly once.

A message is {"callback_id", "lead_key", "lead": {...EnrichedLead...}, "received_at"}.
For each record: validate the lead, compute icp_score and tier when Clay sent none
(scoring.py), evaluate the rules (routing.py), deliver to every chosen destination that is
configured, and write the outcome to LEADS_TABLE.

Exactly once per destination: one STATE_TABLE item per callback, `delivery#<callback_id>`,
holds a lease and the map of destinations delivered. Before sending, one conditional
UpdateItem takes the lease (only if no unexpired lease is held) and returns the map; the
router sends only to what the map lacks; after the sends, one UpdateItem adds what this
attempt delivered and frees the lease (only if it still owns it). So a lead costs two ledger
writes and no read however many destinations it has, and a retry of the batch (or a redrive
from the DLQ) sends only what is missing. A record whose callback is leased by another
invocation (a duplicate SQS delivery) goes back to the queue untouched.

The window this leaves: a crash (or a failed ledger write) after some 2xx answers but before
the complete write. The lease then lapses (DELIVERY_LEASE_SECONDS, shorter than the queue's
visibility timeout) and the retry repeats every send of that attempt, not just the last one,
HubSpot's included (its upsert by email is idempotent). That is why webhooks carry an
Idempotency-Key header.

Endings of a record:
- routed / skipped / partial with nothing left to retry: processed;
- a retryable failure (429, 5xx, timeout) after the in-invocation retries: back to the queue
  (batch item failure); on its last receive it is dead-lettered instead, with what failed;
- a permanent failure (other 4xx) or a malformed message: ROUTING_DLQ_URL with the reasons and
  each destination's status, and processed. Nothing delivered is lost: the DLQ has the lead.

HubSpot takes up to 100 contacts per call, so `start` claims every record of the SQS batch and
makes the batch's HubSpot upserts before the per-record pass; each input's own result maps
back to its record. A lead's webhooks (outreach, nurture, Zapier, Slack) are sent concurrently,
one thread each, so a lead takes as long as its slowest destination rather than their sum.
"""

from __future__ import annotations

import contextvars
import json
import math
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import ValidationError

from clay_pipeline.config import RouterSettings, dump_json
from clay_pipeline.destinations import (
    DELIVERED,
    MIN_ATTEMPT_SECONDS,
    DeliveryResult,
    HttpClient,
    HubSpotContacts,
    NurtureWebhook,
    OutreachWebhook,
    RetryPolicy,
    SlackAlert,
    Status,
    WebhookDestination,
    ZapierWebhook,
    contact_input,
    idempotency_key,
)
from clay_pipeline.intake import describe_problems
from clay_pipeline.models import EnrichedLead
from clay_pipeline.observability import count, logger
from clay_pipeline.routing import Decision, RuleSet
from clay_pipeline.scoring import icp_score, tier_for
from clay_pipeline.stores import DeliveryLedger, LeadsTable, Lease, Queue

SAFETY_MARGIN_SECONDS = 2.0  # left unused at the end of an invocation to report the batch
LEADS_TABLE_DESTINATION = "leads_table"  # the outcome record itself: always written, never "off"
ALREADY_DELIVERED = DeliveryResult(Status.DELIVERED, "already_delivered")
IN_FLIGHT = DeliveryResult(Status.RETRYABLE, "in_flight")  # another invocation holds the callback's lease


class InvalidMessage(Exception):  # an outcome, not an error
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class RetryLater(Exception):  # an outcome, not an error
    """Some delivery may still succeed: the record goes back to the queue. The message is safe to log."""


@dataclass(frozen=True)
class RoutingMessage:
    callback_id: str
    lead_key: str
    received_at: str
    lead: dict[str, Any]  # the validated lead with icp_score and tier filled in
    score_computed: bool


def parse_message(body: str) -> RoutingMessage:
    try:
        document = json.loads(body)
    except ValueError as error:
        raise InvalidMessage("malformed_json", f"body is not valid JSON: {getattr(error, 'msg', error)}") from None
    if not isinstance(document, dict) or not isinstance(document.get("lead"), dict):
        raise InvalidMessage("not_routing_message", "body must be an object with a 'lead' object")
    try:
        lead = EnrichedLead.model_validate(document["lead"])
    except ValidationError as error:
        raise InvalidMessage("invalid_lead", describe_problems(error)) from None
    fields = lead.to_message()
    computed = lead.icp_score is None
    if computed:
        fields["icp_score"] = icp_score(
            lead.employee_count, lead.industry, lead.job_title, lead.email, lead.phone
        ).score
    fields.setdefault("tier", tier_for(fields["icp_score"]))
    lead_key = str(document.get("lead_key") or lead.lead_id)
    return RoutingMessage(
        callback_id=str(document.get("callback_id") or lead_key),
        lead_key=lead_key,
        received_at=str(document.get("received_at") or datetime.now(UTC).isoformat()),
        lead=fields,
        score_computed=computed,
    )


@dataclass(frozen=True)
class Attempt:
    """One record in this invocation: its message, the rules' choice and the callback's lease."""

    message: RoutingMessage
    decision: Decision
    deliveries: tuple[str, ...]  # chosen destinations that are on, the leads table aside
    lease: Lease | None  # None when there is nothing to deliver, or another invocation holds it

    @property
    def in_flight(self) -> bool:
        return bool(self.deliveries) and self.lease is None

    @property
    def pending(self) -> tuple[str, ...]:
        """What this attempt sends: deliveries that no earlier attempt delivered."""
        if self.lease is None:
            return ()
        return tuple(name for name in self.deliveries if name not in self.lease.delivered)


@dataclass
class Outcome:
    message: RoutingMessage
    decision: Decision
    results: dict[str, DeliveryResult] = field(default_factory=dict)  # chosen destinations that are on
    off: list[str] = field(default_factory=list)

    @property
    def skipped_reason(self) -> str | None:
        if not self.decision.destinations:
            return self.decision.skipped_reason
        if not self.results:
            return "every chosen destination is off: " + ", ".join(self.off)
        return None

    @property
    def routing_status(self) -> str:
        if self.skipped_reason:
            return "skipped"
        counted = [r for name, r in self.results.items() if name != LEADS_TABLE_DESTINATION] or [DELIVERED]
        delivered = sum(result.delivered for result in counted)
        if delivered == len(counted):
            return "routed"
        return "partial" if delivered else "failed"

    def failures(self, status: Status) -> dict[str, DeliveryResult]:
        return {name: result for name, result in self.results.items() if result.status is status}

    def destination_statuses(self) -> dict[str, str]:
        statuses = dict.fromkeys(self.off, "off")
        for name, result in self.results.items():
            statuses[name] = {
                Status.DELIVERED: "delivered",
                Status.RETRYABLE: "failed",
                Status.PERMANENT: f"permanent:{result.reason}",
            }[result.status]
        return statuses

    def record(self) -> dict[str, Any]:
        """The LEADS_TABLE attributes (skipped_reason only when skipped: the store cannot write nulls)."""
        values = {
            "routing_status": self.routing_status,
            "tier": self.message.lead.get("tier"),
            "icp_score": self.message.lead.get("icp_score"),
            "routes": list(self.decision.destinations),
            "destinations": self.destination_statuses(),
            "skipped_reason": self.skipped_reason,
            "routed_at": datetime.now(UTC).isoformat(),
        }
        return {name: value for name, value in values.items() if value is not None}


def describe_failures(failures: dict[str, DeliveryResult]) -> str:
    return "; ".join(
        f"{name}: {result.reason}" + (f" ({result.detail})" if result.detail else "")
        for name, result in failures.items()
    )


class LeadRouter:
    def __init__(self, settings: RouterSettings, http: HttpClient | None = None, sleep: Any = time.sleep) -> None:
        self.settings = settings
        self.rules = RuleSet.from_setting(settings.routing_rules)  # ConfigError at cold start
        self.ledger = DeliveryLedger(settings.state_table, settings.delivery_lease_seconds, settings.delivery_mark_days)
        self.leads = LeadsTable(settings.leads_table)
        self.dead_letters = Queue(settings.routing_dlq_url)
        http = http or HttpClient()
        self.webhooks: dict[str, WebhookDestination] = {
            destination.name: destination
            for destination in (
                SlackAlert(http, settings.slack_min_interval_seconds, sleep),
                OutreachWebhook(http),
                NurtureWebhook(http),
                ZapierWebhook(http),
            )
        }
        self.hubspot = HubSpotContacts(http, settings.hubspot_base_url)
        self.retry = RetryPolicy(
            settings.destination_timeout_seconds,
            settings.destination_retry_attempts,
            settings.destination_retry_backoff_seconds,
            sleep,
        )
        # One thread per webhook destination, kept across invocations (threads start on first use).
        # A lead has at most one send per destination in flight, so Slack's pacing state is never shared.
        self.senders = ThreadPoolExecutor(max_workers=len(self.webhooks), thread_name_prefix="delivery")
        self.deadline = math.inf
        self.enabled: set[str] = set()
        self._announced_off: set[str] = set()
        self._attempts: dict[str, Attempt] = {}  # by SQS message id, claimed in start for this batch
        self._hubspot_results: dict[str, DeliveryResult] = {}  # by SQS message id, for this batch
        self._unavailable: dict[str, DeliveryResult] = {}  # destinations that failed after retries, this batch

    # -- per invocation --------------------------------------------------------------------
    def start(self, records: Iterable[SQSRecord], remaining_ms: int) -> None:
        """The deadline, which destinations are configured now, each record's claim and the batch's HubSpot upserts.

        Reading every destination's setting here, on the invocation's thread, also warms the
        secret cache before the delivery threads read it.
        """
        self.deadline = time.monotonic() + remaining_ms / 1000 - SAFETY_MARGIN_SECONDS
        destinations: list[WebhookDestination | HubSpotContacts] = [*self.webhooks.values(), self.hubspot]
        self.enabled = {d.name for d in destinations if d.configured()} | {LEADS_TABLE_DESTINATION}
        for name in sorted({d.name for d in destinations} - self.enabled - self._announced_off):
            logger.info("destination is off: its URL or token is not configured", extra={"destination": name})
            self._announced_off.add(name)
        self._attempts = {}
        self._hubspot_results = {}
        self._unavailable = {}
        for record in records:
            try:
                self._attempts[record.message_id] = self._claim(record)
            except InvalidMessage:
                continue  # dead-lettered by process()
        if "hubspot" in self.enabled:
            self._upsert_to_hubspot(self._attempts)

    # -- one record ------------------------------------------------------------------------
    def process(self, record: SQSRecord) -> str:
        attempt = self._attempts.pop(record.message_id, None)
        if attempt is None:  # a message start could not parse, or a record it did not see
            try:
                attempt = self._claim(record)
            except InvalidMessage as error:
                self._dead_letter(record, error.reason, error.detail, {})
                return "dead_lettered"
        if self.deadline - time.monotonic() < MIN_ATTEMPT_SECONDS:
            # The lease lapses before SQS shows the record again (lease < visibility timeout).
            raise RetryLater("out of time before routing")
        outcome = self._route(record, attempt)
        if not attempt.in_flight:  # the invocation holding the lease writes the outcome
            self.leads.record_routing(attempt.message.lead_key, attempt.message.callback_id, outcome.record())
        return self._finish(record, outcome)

    def _claim(self, record: SQSRecord) -> Attempt:
        """Parse, choose the destinations and claim the callback (no ledger write when there is nothing to send)."""
        message = parse_message(record.body)
        decision = self.rules.evaluate(message.lead)
        deliveries = tuple(
            name for name in decision.destinations if name in self.enabled and name != LEADS_TABLE_DESTINATION
        )
        lease = self.ledger.claim(message.callback_id) if deliveries else None
        return Attempt(message, decision, deliveries, lease)

    def _route(self, record: SQSRecord, attempt: Attempt) -> Outcome:
        sent = self._deliver_pending(record, attempt)
        outcome = Outcome(attempt.message, attempt.decision)
        for name in attempt.decision.destinations:
            if name not in self.enabled:
                outcome.off.append(name)
            elif name == LEADS_TABLE_DESTINATION:
                outcome.results[name] = DELIVERED  # written by the caller with the outcome
            elif attempt.in_flight:
                outcome.results[name] = IN_FLIGHT
            else:
                outcome.results[name] = sent.get(name, ALREADY_DELIVERED)
        return outcome

    def _finish(self, record: SQSRecord, outcome: Outcome) -> str:
        status = outcome.routing_status
        extra = {"lead_key": outcome.message.lead_key, "routing_status": status, "tier": outcome.message.lead["tier"]}
        if status == "skipped":
            count("LeadSkipped")
            logger.info("lead skipped", extra={**extra, "skipped_reason": outcome.skipped_reason})
            return "skipped"
        if status == "routed":
            count("LeadRouted")
            logger.info("lead routed", extra={**extra, "destinations": outcome.destination_statuses()})
            return "routed"
        retryable, permanent = outcome.failures(Status.RETRYABLE), outcome.failures(Status.PERMANENT)
        receives = int(record.attributes.approximate_receive_count or 1)
        if retryable and receives < self.settings.routing_queue_max_receive_count:
            summary = describe_failures({name: DeliveryResult(r.status, r.reason) for name, r in retryable.items()})
            logger.warning("lead goes back to the queue", extra={**extra, "failures": summary})
            raise RetryLater(f"retryable: {summary}")
        reason = "retries_exhausted" if retryable else "permanent_failure"
        self._dead_letter(record, reason, describe_failures({**permanent, **retryable}), outcome.destination_statuses())
        return "dead_lettered"

    def _dead_letter(self, record: SQSRecord, reason: str, detail: str, statuses: dict[str, str]) -> None:
        # The body is kept as-is so a redrive replays it; the ledger's delivered map keeps it from repeating sends.
        self.dead_letters.send_raw(
            record.body,
            attributes={
                "reason": reason,
                "detail": detail[:1000],
                "destinations": dump_json(statuses) if statuses else "",
                "source_message_id": record.message_id,
            },
        )
        count("RouterDeadLettered", reason=reason)
        logger.warning("lead sent to the routing DLQ", extra={"reason": reason, "message_id": record.message_id})

    # -- deliveries ------------------------------------------------------------------------
    def _deliver_pending(self, record: SQSRecord, attempt: Attempt) -> dict[str, DeliveryResult]:
        """Send to every pending destination, then record the deliveries and free the lease in one ledger write."""
        if attempt.lease is None:
            return {}
        results: dict[str, DeliveryResult] = {}
        try:
            if "hubspot" in attempt.pending:
                results["hubspot"] = self._hubspot_result(record, attempt)
            self._send_webhooks(attempt.message, [name for name in attempt.pending if name != "hubspot"], results)
        finally:
            # Also after an unexpected error: what was delivered is not sent again by the retry.
            delivered = [name for name, result in results.items() if result.delivered]
            if not self.ledger.complete(attempt.lease, delivered):
                # Our lease lapsed and another invocation took the callback over: it may repeat these
                # sends (the Idempotency-Key is for that); the ledger recorded them for later attempts.
                logger.warning(
                    "delivery lease lost before the deliveries were recorded",
                    extra={"callback_id": attempt.lease.callback_id, "destinations": sorted(delivered)},
                )
                count("DeliveryLeaseLost")
        return results

    def _send_webhooks(self, message: RoutingMessage, names: list[str], results: dict[str, DeliveryResult]) -> None:
        """Send concurrently, adding each result to `results`; an unexpected error is raised once every send is done."""
        futures = {}
        for name in names:
            if name in self._unavailable:
                # It just failed after its retries: the batch's other leads wait in the queue instead of
                # spending the invocation's time on the same timeouts and backoffs.
                results[name] = self._unavailable[name]
            else:
                # In the invocation's context: its per-thread log keys (observability) go with the send.
                futures[name] = self.senders.submit(
                    contextvars.copy_context().run, self._send, message, self.webhooks[name]
                )
        errors: list[BaseException] = []
        for name, future in futures.items():
            try:
                results[name] = result = future.result()
            except Exception as error:  # raised below, after the other sends' results are in
                errors.append(error)
                continue
            self._settle(name, result)
            if result.status is Status.RETRYABLE:
                self._unavailable[name] = result
        if errors:
            raise errors[0]

    def _send(self, message: RoutingMessage, destination: WebhookDestination) -> DeliveryResult:
        """One destination with its retries (on a delivery thread)."""
        key = idempotency_key(message.callback_id, destination.name)
        return self.retry.run(lambda timeout: destination.deliver(message.lead, key, timeout), self.deadline)

    def _settle(self, name: str, result: DeliveryResult) -> None:
        if result.delivered:
            count("DeliverySucceeded", destination=name)
        else:
            count("DeliveryFailed", destination=name)
            logger.info(
                "delivery failed",
                extra={"destination": name, "status": str(result.status), "reason": result.reason},
            )

    def _hubspot_result(self, record: SQSRecord, attempt: Attempt) -> DeliveryResult:
        if record.message_id not in self._hubspot_results:  # not in the batch start saw
            self._upsert_to_hubspot({record.message_id: attempt})
        return self._hubspot_results[record.message_id]

    def _upsert_to_hubspot(self, attempts: dict[str, Attempt]) -> None:
        """Upsert, in batches, the contact of every attempt that owes HubSpot one; each result by its record."""
        owing = {message_id: a.message for message_id, a in attempts.items() if "hubspot" in a.pending}
        if not owing:
            return
        by_email = self._upsert_contacts(list(owing.values()))
        for message_id, message in owing.items():
            result = by_email[message.lead["email"]]
            self._settle("hubspot", result)
            self._hubspot_results[message_id] = result

    def _upsert_contacts(self, messages: list[RoutingMessage]) -> dict[str, DeliveryResult]:
        """One input per email (HubSpot refuses a batch naming a contact twice: the newest enrichment wins)."""
        inputs: dict[str, dict[str, Any]] = {}
        for message in sorted(messages, key=lambda m: m.received_at):
            inputs[message.lead["email"]] = contact_input(message.lead, message.received_at)
        results = dict.fromkeys(inputs, DeliveryResult(Status.RETRYABLE, "out_of_time"))
        pending = dict(inputs)
        size = self.settings.hubspot_batch_size

        def send(timeout: float) -> DeliveryResult:
            batch = list(pending.values())
            for start in range(0, len(batch), size):
                results.update(self.hubspot.upsert(batch[start : start + size], timeout))
            for email in list(pending):
                if results[email].status is not Status.RETRYABLE:
                    del pending[email]
            # The slowest Retry-After among what is left decides the wait before the next attempt.
            return max((results[e] for e in pending), key=lambda r: r.retry_after or 0.0, default=DELIVERED)

        self.retry.run(send, self.deadline)
        return results
