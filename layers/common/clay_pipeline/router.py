"""Routing one RoutingQueue batch: score, choose destinations, deliver each exactly once.

A message is {"callback_id", "lead_key", "lead": {...EnrichedLead...}, "received_at"}.
For each record: validate the lead, compute icp_score and tier when Clay sent none
(scoring.py), evaluate the rules (routing.py), deliver to every chosen destination that is
configured, and write the outcome to LEADS_TABLE.

Exactly once per destination: before a send the router takes a lease on
`delivery#<callback_id>#<destination>` in STATE_TABLE with a conditional put; a success turns
the lease into a delivered mark kept DELIVERY_MARK_DAYS, a failure deletes it. A retry of the
batch (or a redrive from the DLQ) finds the marks and sends only what is missing. The one
window left is a crash between a destination's 2xx and the mark: the lease then expires and
the send is repeated, which is why webhooks carry an Idempotency-Key header.

Endings of a record:
- routed / skipped / partial with nothing left to retry: processed;
- a retryable failure (429, 5xx, timeout) after the in-invocation retries: back to the queue
  (batch item failure); on its last receive it is dead-lettered instead, with what failed;
- a permanent failure (other 4xx) or a malformed message: ROUTING_DLQ_URL with the reasons and
  each destination's status, and processed. Nothing delivered is lost: the DLQ has the lead.

HubSpot takes up to 100 contacts per call, so the HubSpot deliveries of a whole SQS batch are
made in `start`, before the per-record pass; each input's own result maps back to its record.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
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
from clay_pipeline.stores import LeadsTable, Queue, StateStore

SAFETY_MARGIN_SECONDS = 2.0  # left unused at the end of an invocation to report the batch
LEADS_TABLE_DESTINATION = "leads_table"  # the outcome record itself: always written, never "off"
ALREADY_DELIVERED = DeliveryResult(Status.DELIVERED, "already_delivered")


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


class Claim(Enum):
    CLAIMED = "claimed"
    DELIVERED = "delivered"
    IN_FLIGHT = "in_flight"


@dataclass(frozen=True)
class DeliveryLedger:
    """One STATE_TABLE item per (callback, destination): a lease while sending, then a delivered mark."""

    store: StateStore
    lease_seconds: int
    mark_days: int

    @staticmethod
    def key(callback_id: str, destination: str) -> str:
        return f"delivery#{callback_id}#{destination}"

    def claim(self, callback_id: str, destination: str) -> Claim:
        key = self.key(callback_id, destination)
        if self.store.put_mark(key, self.lease_seconds, {"status": "sending"}):
            return Claim.CLAIMED
        mark = self.store.get(key)
        return Claim.DELIVERED if mark and mark.get("status") == "delivered" else Claim.IN_FLIGHT

    def confirm(self, callback_id: str, destination: str) -> None:
        self.store.update(
            self.key(callback_id, destination),
            {
                "status": "delivered",
                "delivered_at": datetime.now(UTC).isoformat(),
                "expires_at": int(time.time()) + self.mark_days * 86400,
            },
        )

    def release(self, callback_id: str, destination: str) -> None:
        self.store.delete(self.key(callback_id, destination))


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
        self.ledger = DeliveryLedger(
            StateStore(settings.state_table), settings.delivery_lease_seconds, settings.delivery_mark_days
        )
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
        self.deadline = math.inf
        self.enabled: set[str] = set()
        self._announced_off: set[str] = set()
        self._hubspot_results: dict[str, DeliveryResult] = {}  # by SQS message id, for this batch
        self._unavailable: dict[str, DeliveryResult] = {}  # destinations that failed after retries, this batch

    # -- per invocation --------------------------------------------------------------------
    def start(self, records: Iterable[SQSRecord], remaining_ms: int) -> None:
        """The deadline, which destinations are configured now, and the batch's HubSpot upserts."""
        self.deadline = time.monotonic() + remaining_ms / 1000 - SAFETY_MARGIN_SECONDS
        destinations: list[WebhookDestination | HubSpotContacts] = [*self.webhooks.values(), self.hubspot]
        self.enabled = {d.name for d in destinations if d.configured()} | {LEADS_TABLE_DESTINATION}
        for name in sorted({d.name for d in destinations} - self.enabled - self._announced_off):
            logger.info("destination is off: its URL or token is not configured", extra={"destination": name})
            self._announced_off.add(name)
        self._hubspot_results = {}
        self._unavailable = {}
        if "hubspot" in self.enabled:
            self._hubspot_results = self._upsert_to_hubspot(list(records))

    # -- one record ------------------------------------------------------------------------
    def process(self, record: SQSRecord) -> str:
        try:
            message = parse_message(record.body)
        except InvalidMessage as error:
            self._dead_letter(record, error.reason, error.detail, {})
            return "dead_lettered"
        if self.deadline - time.monotonic() < MIN_ATTEMPT_SECONDS:
            raise RetryLater("out of time before routing")
        outcome = self._route(record, message)
        self.leads.record_routing(message.lead_key, message.callback_id, outcome.record())
        return self._finish(record, outcome)

    def _route(self, record: SQSRecord, message: RoutingMessage) -> Outcome:
        outcome = Outcome(message, self.rules.evaluate(message.lead))
        for name in outcome.decision.destinations:
            if name not in self.enabled:
                outcome.off.append(name)
            elif name == LEADS_TABLE_DESTINATION:
                outcome.results[name] = DELIVERED  # written by the caller with the outcome
            elif name == "hubspot":
                outcome.results[name] = self._hubspot_result(record, message)
            else:
                outcome.results[name] = self._deliver_once(message, self.webhooks[name])
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
        # The body is kept as-is so a redrive replays it; the delivered marks keep the replay from repeating sends.
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
    def _deliver_once(self, message: RoutingMessage, destination: WebhookDestination) -> DeliveryResult:
        name = destination.name
        if name in self._unavailable:
            # It just failed after its retries: the batch's other leads wait in the queue instead of
            # spending the invocation's time on the same timeouts and backoffs.
            return self._unavailable[name]
        claim = self.ledger.claim(message.callback_id, name)
        if claim is Claim.DELIVERED:
            return ALREADY_DELIVERED
        if claim is Claim.IN_FLIGHT:
            return DeliveryResult(Status.RETRYABLE, "in_flight")
        key = idempotency_key(message.callback_id, name)
        try:
            result = self.retry.run(lambda timeout: destination.deliver(message.lead, key, timeout), self.deadline)
        except BaseException:
            self.ledger.release(message.callback_id, name)
            raise
        self._settle(message, name, result)
        if result.status is Status.RETRYABLE:
            self._unavailable[name] = result
        return result

    def _settle(self, message: RoutingMessage, name: str, result: DeliveryResult) -> None:
        if result.delivered:
            self.ledger.confirm(message.callback_id, name)
            count("DeliverySucceeded", destination=name)
        else:
            self.ledger.release(message.callback_id, name)
            count("DeliveryFailed", destination=name)
            logger.info(
                "delivery failed",
                extra={"destination": name, "status": str(result.status), "reason": result.reason},
            )

    def _hubspot_result(self, record: SQSRecord, message: RoutingMessage) -> DeliveryResult:
        if record.message_id not in self._hubspot_results:  # not in the batch start saw
            self._hubspot_results.update(self._upsert_to_hubspot([record]))
        return self._hubspot_results[record.message_id]

    def _upsert_to_hubspot(self, records: list[SQSRecord]) -> dict[str, DeliveryResult]:
        """Claim, upsert in batches, and settle every record of the batch that routes to HubSpot."""
        results: dict[str, DeliveryResult] = {}
        claimed: dict[str, RoutingMessage] = {}
        for record in records:
            try:
                message = parse_message(record.body)
            except InvalidMessage:
                continue  # dead-lettered by process()
            if "hubspot" not in self.rules.evaluate(message.lead).destinations:
                continue
            claim = self.ledger.claim(message.callback_id, "hubspot")
            if claim is Claim.CLAIMED:
                claimed[record.message_id] = message
            else:
                results[record.message_id] = (
                    ALREADY_DELIVERED if claim is Claim.DELIVERED else DeliveryResult(Status.RETRYABLE, "in_flight")
                )
        if not claimed:
            return results
        try:
            by_email = self._upsert_contacts(list(claimed.values()))
        except BaseException:
            for message in claimed.values():
                self.ledger.release(message.callback_id, "hubspot")
            raise
        for message_id, message in claimed.items():
            result = by_email[message.lead["email"]]
            self._settle(message, "hubspot", result)
            results[message_id] = result
        return results

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
