"""Routing one RoutingQueue batch: score, choose destinations, deliver what each lead is owed.

A message is {"callback_id", "lead_key", "lead": {...EnrichedLead...}, "received_at"}.
For each record: validate the lead, compute icp_score and tier when Clay sent none
(scoring.py), evaluate the rules (routing.py), work out what each chosen destination is owed
under its delivery policy (delivery_policy.py), deliver that, and write the outcome.

Clay calls a row back again whenever a column re-runs, so exactly-once is per lead, not per
callback. The ledger lives on the lead's LeadsTable item (stores.LeadLedger): one conditional
UpdateItem takes the lead's lease (only if no unexpired lease is held) and returns what was
delivered before, with which payload hash, score and callback; the router sends only what is
owed; one UpdateItem then adds this attempt's deliveries, writes the routing outcome and frees
the lease (only if it still owns it). So a routed lead costs two writes and no read, and a
retry of the batch, a redrive from the DLQ or another callback of the same lead sends only
what is still owed. Two callbacks of one lead never deliver concurrently: the second finds
the lease held and waits in the queue (visibility hand-back, never toward the DLQ). Within a
batch, only the newest callback of each lead is routed; older ones are superseded.

A delivery whose answer is lost has an unknown outcome: the request went out in full and no
answer came (a read timeout, the request's deadline), or the invocation ended (crash, Lambda
timeout, a failed ledger write) between sending and recording. For a destination whose
UNKNOWN_OUTCOME_POLICIES is "hold" (outreach, nurture and Zapier by default: routing.py) such a
delivery is never sent again automatically. Its intent is written on the lead's item before the
send (LeadLedger.record_intent, a third write, made only when such a delivery is owed), so a
later claim that finds an intent nobody completed knows what may have gone out; the ledger then
marks the destination `unknown` (DeliveryUnknown metric and alarm, shown by `trace`) until an
operator settles it (`clay-pipeline settle LEAD DESTINATION --delivered|--resend`). A request
that never left (DNS, connection refused, connect timeout) is retried as before. "resend"
destinations (Slack by default, HubSpot always: its upsert by email is idempotent) are sent
again after a lost answer or a lapsed lease, with the same Idempotency-Key for every repeat of
one delivery (the lead key for once_per_lead, the lead key and payload hash for on_change).

A destination an operator paused (pause.py: `clay-pipeline destination pause hubspot`) is not
sent to: the lead's other destinations are delivered and recorded, and the record waits in the
queue (visibility hand-back, never toward the DLQ) until the switch is cleared; its next receive
finds the others in the ledger and sends only the paused one. A lead whose every chosen
destination is paused waits without claiming its lease (one write, on its first receive only).
What a pause holds is marked on the lead's item (`held_<destination>`, in a write that happens
anyway), and whichever callback of the lead is routed next delivers it, with the lead's newest
version, even if its own rules would not choose that destination (a later callback scored lower,
say): a pause delays a delivery, it never drops one.

Endings of a record:
- routed / skipped / partial with nothing left to retry / superseded: processed;
- the lead's lease is held by another invocation, or a destination it owes is paused (by an
  operator, or by the router itself when HubSpot says to stop: its DAILY limit, a missing
  property): back to the queue for a while (a fresh copy near maxReceiveCount), never toward the DLQ;
- every delivery made or held, some with an unknown outcome: processed; the lead waits for `settle`;
- a retryable failure (429, 5xx, a request that never left) after the in-invocation retries: back to the queue
  (batch item failure); on its last receive it is dead-lettered instead, with what failed;
- a permanent failure (other 4xx) or a malformed message: ROUTING_DLQ_URL with the reasons and
  each destination's status, and processed. Nothing delivered is lost: the DLQ has the lead;
- a lead whose values break reading or claiming it (unroutable_lead): ROUTING_DLQ_URL at once,
  alone, with the exception; the batch's other records go on. A dependency failure or an error
  while delivering: back to the queue, and on its last receive ROUTING_DLQ_URL with the reason
  (dependency_failed, routing_failed) instead of SQS's redrive, which carries none.

HubSpot takes up to 100 contacts per call, so `start` claims every lead of the SQS batch and
makes the batch's HubSpot upserts and webhook sends before the per-record pass; each contact's
result maps back to its record (hubspot.py: one refused contact fails alone). HubSpot and the
webhooks go out concurrently: every destination at once, and within a destination the batch's
first lead alone (a probe: a destination that is down costs one lead's
retries, and the others wait in the queue), then the rest at once (up to WEBHOOK_FAN_OUT). A
batch takes about two round trips of its slowest destination instead of one per lead, and Lambda
bills the wall time.
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import math
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from clay_pipeline.adapters.aws_failures import is_dependency_failure
from clay_pipeline.adapters.hubspot import Contact, ContactMapping, HubSpotContacts
from clay_pipeline.adapters.leads_table import LeadsTable
from clay_pipeline.adapters.ledger import Busy, LeadLedger, Lease, held_markers
from clay_pipeline.adapters.queues import Queue, origin_attributes
from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.adapters.webhooks import (
    DELIVERED,
    MIN_ATTEMPT_SECONDS,
    DeliveryResult,
    HttpClient,
    NurtureWebhook,
    OutreachWebhook,
    RetryPolicy,
    SlackAlert,
    Status,
    WebhookDestination,
    ZapierWebhook,
    idempotency_key,
)
from clay_pipeline.config import RouterSettings
from clay_pipeline.core.json_text import dump_json
from clay_pipeline.core.leads import EnrichedLead
from clay_pipeline.core.policies import Delivered, Owed, newer, payload_hash, peak_score, plan
from clay_pipeline.core.rules import HOLD, ONCE_PER_LEAD, Decision, RuleSet, parse_unknown_outcomes
from clay_pipeline.core.scoring import icp_score, tier_for
from clay_pipeline.observability import count, level, logger, summarize
from clay_pipeline.queue_batch import QueueRecord
from clay_pipeline.services.intake import describe_problems
from clay_pipeline.services.pause import DestinationSwitch

SAFETY_MARGIN_SECONDS = 2.0  # left unused at the end of an invocation to report the batch
LEADS_TABLE_DESTINATION = "leads_table"  # the outcome record itself: always written, never "off"
IN_FLIGHT_WAIT_SECONDS = 10  # per receive, at most until the other lease lapses
MAX_WAIT_SECONDS = 900  # SQS's longest delay for the fresh copy near maxReceiveCount
PAUSED_RESULT = DeliveryResult(Status.PAUSED, "paused")
WEBHOOK_FAN_OUT = 16  # concurrent sends per destination once its probe answered: a whole batch at once
OWED_RESULTS = {
    Owed.ALREADY_DELIVERED: DeliveryResult(Status.DELIVERED, Owed.ALREADY_DELIVERED.value),
    Owed.UNCHANGED: DeliveryResult(Status.DELIVERED, Owed.UNCHANGED.value),
    Owed.WITHHELD: DeliveryResult(Status.WITHHELD, Owed.WITHHELD.value),
    Owed.UNKNOWN: DeliveryResult(Status.UNKNOWN, Owed.UNKNOWN.value),
}
LAPSED_REASON = "ended_before_recording"  # an intent found by a later claim: its invocation died after it


class InvalidMessage(Exception):  # an outcome, not an error
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class Unroutable(Exception):
    """Reading or claiming the lead raised: its values broke something, or a dependency failed meanwhile."""

    def __init__(self, error: Exception) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.error = error


class RetryLater(Exception):  # an outcome, not an error
    """Some delivery may still succeed: the record goes back to the queue. The message is safe to log."""


@dataclass(frozen=True)
class RoutingMessage:
    callback_id: str
    lead_key: str
    received_at: str
    lead: dict[str, Any]  # the validated lead with icp_score and tier filled in
    sent: frozenset[str]  # the columns Clay sent with a value, before the score and tier were filled in


def parse_message(body: str) -> RoutingMessage:
    try:
        document = json.loads(body)
    except ValueError as error:
        raise InvalidMessage("malformed_json", f"body is not valid JSON: {getattr(error, 'msg', error)}") from None
    if not isinstance(document, dict) or not isinstance(document.get("lead"), dict):
        raise InvalidMessage("not_routing_message", "body must be an object with a 'lead' object")
    try:
        lead = EnrichedLead.read(document["lead"])
    except ValidationError as error:
        raise InvalidMessage("invalid_lead", describe_problems(error)) from None
    fields = lead.to_message()
    sent = frozenset(fields)
    if lead.icp_score is None:
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
        sent=sent,
    )


@dataclass(frozen=True)
class Attempt:
    """One record in this invocation: its message, the rules' choice, the lead's claim and what is owed."""

    message: RoutingMessage
    decision: Decision
    deliveries: tuple[str, ...]  # chosen destinations that are on, the leads table aside
    claim: Lease | Busy | None = None  # None when there is nothing to deliver (or the record is superseded)
    owed: dict[str, Owed] = field(default_factory=dict)  # per delivery, from the lead's ledger
    payload_hashes: dict[str, str] = field(default_factory=dict)
    superseded: bool = False  # a newer callback of the lead was routed, or is later in this batch
    paused: frozenset[str] = frozenset()  # chosen deliveries whose destination an operator paused
    intended: frozenset[str] = frozenset()  # pending deliveries to "hold" destinations (UNKNOWN_OUTCOME_POLICIES)
    marked: frozenset[str] = frozenset()  # destinations whose intent this attempt wrote (stores.SENDING_PREFIX)

    @property
    def lease(self) -> Lease | None:
        return self.claim if isinstance(self.claim, Lease) else None

    @property
    def pending(self) -> tuple[str, ...]:
        """What this attempt sends: the deliveries the lead is owed, but not to a paused destination."""
        if self.lease is None:
            return ()
        return tuple(name for name in self.owed_now() if name not in self.paused)

    @property
    def held(self) -> tuple[str, ...]:
        """Deliveries that wait for a paused destination (every paused one, when the ledger was not read)."""
        if self.lease is None:
            return tuple(name for name in self.deliveries if name in self.paused)
        return tuple(name for name in self.owed_now() if name in self.paused)

    def owed_now(self) -> tuple[str, ...]:
        return tuple(name for name in self.deliveries if self.owed.get(name) is Owed.SEND)


@dataclass
class Outcome:
    message: RoutingMessage
    decision: Decision
    results: dict[str, DeliveryResult] = field(default_factory=dict)  # chosen destinations that are on
    off: list[str] = field(default_factory=list)
    held_elsewhere: tuple[str, ...] = ()  # deliveries an earlier callback's pause held, found after the fact

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
        unsettled = [result for result in counted if not result.settled]
        if not unsettled:
            return "routed"
        if all(result.status is Status.PAUSED for result in unsettled):
            return "paused"
        if all(result.status in (Status.UNKNOWN, Status.PAUSED) for result in unsettled):
            return "paused" if any(result.status is Status.PAUSED for result in unsettled) else "unknown"
        return "partial" if any(result.delivered for result in counted) else "failed"

    def failures(self, status: Status) -> dict[str, DeliveryResult]:
        return {name: result for name, result in self.results.items() if result.status is status}

    def destination_statuses(self) -> dict[str, str]:
        statuses = dict.fromkeys(self.off, "off")
        for name, result in self.results.items():
            statuses[name] = {
                Status.DELIVERED: "delivered",
                Status.WITHHELD: "withheld",
                Status.RETRYABLE: "failed",
                Status.PAUSED: "paused",
                Status.UNKNOWN: "unknown",
                Status.PERMANENT: f"permanent:{result.reason}",
            }[result.status]
        return statuses

    def record(self) -> dict[str, Any]:
        """The LEADS_TABLE attributes; None removes one (skipped_reason once the lead is routed)."""
        return {
            "routing_status": self.routing_status,
            "tier": self.message.lead.get("tier"),
            "icp_score": self.message.lead.get("icp_score"),
            "routes": list(self.decision.destinations),
            "destinations": self.destination_statuses(),
            "skipped_reason": self.skipped_reason,
            "routed_at": datetime.now(UTC).isoformat(),
        }


def _score(message: RoutingMessage) -> float | None:
    score = message.lead.get("icp_score")
    return float(score) if isinstance(score, (int, float)) else None


def describe_failures(failures: dict[str, DeliveryResult]) -> str:
    return "; ".join(
        f"{name}: {result.reason}" + (f" ({result.detail})" if result.detail else "")
        for name, result in failures.items()
    )


class LeadRouter:
    def __init__(self, settings: RouterSettings, http: HttpClient | None = None, sleep: Any = time.sleep) -> None:
        self.settings = settings
        # ConfigError at cold start for invalid rules or policies
        self.rules = RuleSet.from_setting(
            settings.routing_rules, settings.delivery_policies, settings.routing_required_fields
        )
        self.unknown_outcomes = parse_unknown_outcomes(settings.unknown_outcome_policies)  # ConfigError when invalid
        self.ledger = LeadLedger(settings.leads_table, settings.delivery_lease_seconds)
        self.leads = LeadsTable(settings.leads_table)
        self.routing_queue = Queue(settings.routing_queue_url)
        self.dead_letters = Queue(settings.routing_dlq_url)
        self.switch = DestinationSwitch(StateStore(settings.state_table), settings.destination_pause_cache_seconds)
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
        mapping = ContactMapping.from_settings(  # ConfigError at cold start for an invalid mapping
            settings.hubspot_property_map, settings.hubspot_owned_properties, settings.hubspot_new_contact_values
        )
        self.hubspot = HubSpotContacts(http, settings.hubspot_base_url, mapping)
        self.retry = RetryPolicy(
            settings.destination_timeout_seconds,
            settings.destination_retry_attempts,
            settings.destination_retry_backoff_seconds,
            sleep,
        )
        # Threads kept across invocations (they start on first use): one runner per webhook destination,
        # and the sends they fan out. Slack paces its own messages (SlackAlert holds a lock while it waits).
        self.runners = ThreadPoolExecutor(max_workers=len(self.webhooks) + 1, thread_name_prefix="destination")
        self.senders = ThreadPoolExecutor(
            max_workers=len(self.webhooks) * WEBHOOK_FAN_OUT, thread_name_prefix="delivery"
        )
        self.deadline = math.inf
        self.enabled: set[str] = set()
        self.paused: frozenset[str] = frozenset()
        self._announced_off: set[str] = set()
        self._attempts: dict[str, Attempt] = {}  # by SQS message id, claimed in start for this batch
        self._hubspot_results: dict[str, DeliveryResult] = {}  # by SQS message id, for this batch
        self._sent: dict[str, dict[str, DeliveryResult]] = {}  # by SQS message id: webhook results, this batch
        self._errors: dict[str, BaseException] = {}  # by SQS message id: a send that raised, this batch
        self._unroutable: dict[str, Exception] = {}  # by SQS message id: reading or claiming it raised, this batch
        self._unavailable: dict[str, DeliveryResult] = {}  # destinations that failed after retries, this batch
        self._results_lock = threading.Lock()

    # -- per invocation --------------------------------------------------------------------
    def start(self, records: Iterable[QueueRecord], remaining_ms: int) -> None:
        """The deadline, which destinations are configured and paused now, each lead's claim and the batch's
        HubSpot upserts.

        Reading every destination's setting here, on the invocation's thread, also warms the
        secret cache before the delivery threads read it. The pause switch is read at most once.
        """
        self.deadline = time.monotonic() + remaining_ms / 1000 - SAFETY_MARGIN_SECONDS
        destinations: list[WebhookDestination | HubSpotContacts] = [*self.webhooks.values(), self.hubspot]
        self.enabled = {d.name for d in destinations if d.configured()} | {LEADS_TABLE_DESTINATION}
        for name in sorted({d.name for d in destinations} - self.enabled - self._announced_off):
            logger.info("destination is off: its URL or token is not configured", extra={"destination": name})
            self._announced_off.add(name)
        self.paused = self.switch.paused() & self.enabled
        for name in self.paused:
            level("DestinationPaused", 1, destination=name)
        self._attempts = {}
        self._hubspot_results = {}
        self._sent = {}
        self._errors = {}
        self._unavailable = {}
        self._unroutable = {}
        newest: dict[str, tuple[str, RoutingMessage]] = {}  # lead key -> (message id, message)
        for record in records:
            try:
                message = parse_message(record.body)
                previous = newest.get(message.lead_key)
                # Per-column callbacks and re-runs arrive together: only the lead's newest version is routed.
                older = previous is not None and newer(previous[1].received_at, message.received_at)
            except InvalidMessage:
                continue  # dead-lettered by process()
            except Exception as error:  # one lead's values must not fail the batch: process() isolates it
                self._unroutable[record.message_id] = error
                continue
            if older:
                self._attempts[record.message_id] = self._superseded(message)
                continue
            if previous is not None:
                self._attempts[previous[0]] = self._superseded(previous[1])
            newest[message.lead_key] = (record.message_id, message)
        for message_id, message in newest.values():
            try:
                self._attempts[message_id] = self._claim(message)
            except Exception as error:  # a claimed lease lapses by itself (DELIVERY_LEASE_SECONDS)
                self._unroutable[message_id] = error
        try:
            self._send_webhooks(self._attempts, with_hubspot="hubspot" in self.enabled)
        except Exception as error:  # webhook sends keep their own errors: only the batch's HubSpot upsert gets here
            logger.exception("the batch's HubSpot upsert raised; its leads retry it, their other deliveries stand")
            failed = DeliveryResult(Status.RETRYABLE, "hubspot_error", detail=f"{type(error).__name__}: {error}")
            for message_id, attempt in self._attempts.items():
                if "hubspot" in attempt.pending:
                    self._hubspot_results.setdefault(message_id, failed)

    # -- one record ------------------------------------------------------------------------
    def process(self, record: QueueRecord) -> str:
        """Route one record. What it raises stays with it: a lead that cannot be routed is dead-lettered alone,
        with the reason, and the batch's other records are routed (see _isolate)."""
        try:
            return self._process(record)
        except RetryLater:
            raise
        except Exception as error:
            return self._isolate(record, error)

    def _process(self, record: QueueRecord) -> str:
        if (unroutable := self._unroutable.pop(record.message_id, None)) is not None:
            raise Unroutable(unroutable)  # what start() met reading or claiming this lead
        attempt = self._attempts.pop(record.message_id, None)
        if attempt is None:  # a message start could not parse, or a record it did not see
            try:
                attempt = self._claim(parse_message(record.body))
            except InvalidMessage as error:
                self._dead_letter(record, error.reason, error.detail, {})
                return "dead_lettered"
            except Exception as error:
                raise Unroutable(error) from error
        if attempt.superseded:
            return self._supersede(attempt)
        if isinstance(attempt.claim, Busy):
            return self._wait_for_lease(record, attempt.claim)
        if attempt.claim is None and attempt.paused:
            return self._wait_for_resume(record, attempt)
        if self.deadline - time.monotonic() < MIN_ATTEMPT_SECONDS:
            # The lease lapses before SQS shows the record again (lease < visibility timeout).
            raise RetryLater("out of time before routing")
        outcome = self._route(record, attempt)
        if outcome.held_elsewhere:  # nothing chosen now, but a pause held deliveries for the lead: make them
            attempt = self._claim(attempt.message, carried=outcome.held_elsewhere)
            if isinstance(attempt.claim, Busy):
                return self._wait_for_lease(record, attempt.claim)
            if attempt.claim is None:
                return self._wait_for_resume(record, attempt)
            outcome = self._route(record, attempt)
        return self._finish(record, attempt, outcome)

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
        self._dead_letter(record, reason, f"{type(cause).__name__}: {cause}", {})
        return "dead_lettered"

    def _superseded(self, message: RoutingMessage) -> Attempt:
        return Attempt(message, Decision(()), (), superseded=True)

    def _claim(self, message: RoutingMessage, carried: tuple[str, ...] = ()) -> Attempt:
        """Choose the destinations, claim the lead and work out what it is owed (no claim when nothing is on).

        `carried`: destinations a pause held for the lead, delivered whatever the rules choose now.
        """
        decision = self.rules.evaluate(message.lead, message.sent)
        if decision.incomplete:  # nothing for a partial row, not even what a pause held: the complete row brings it
            return Attempt(message, decision, ())
        decision = self._with(decision, carried)
        deliveries = tuple(
            name for name in decision.destinations if name in self.enabled and name != LEADS_TABLE_DESTINATION
        )
        if not deliveries:
            return Attempt(message, decision, deliveries)
        paused = frozenset(deliveries) & self.paused
        if paused == frozenset(deliveries):  # nothing could be sent now: wait without the lease
            return Attempt(message, decision, deliveries, paused=paused)
        # The intent of every delivery this lease may make to a "hold" destination, in the claim's own write:
        # a later claim that finds one uncompleted knows it may have gone out. Those found not owed are
        # cleared by the complete write.
        score, now = _score(message), int(time.time())
        marked = {
            name: Delivered(now, self._payload_hash(message, name), score)
            for name in deliveries
            if name not in paused and self._holds(name)
        }
        claim = self.ledger.claim(message.lead_key, marked)
        if not isinstance(claim, Lease):
            return Attempt(message, decision, deliveries, claim, paused=paused)
        if claim.history.supersedes(message.received_at):
            return Attempt(message, decision, deliveries, claim, superseded=True, marked=frozenset(marked))
        held = tuple(name for name in claim.held if name in self.enabled and name not in deliveries)
        if held:  # an earlier callback's pause held these: this one delivers them
            decision = self._with(decision, held)
            deliveries += held
            paused = frozenset(deliveries) & self.paused
        owed_anyway = frozenset((*carried, *claim.held))  # chosen when they were held: never withheld now
        hashes = {name: self._payload_hash(message, name) for name in deliveries}
        remembered = claim.history.remembered(time.time(), self.settings.delivery_mark_days)
        peak, score = peak_score(remembered), message.lead.get("icp_score")
        chosen_at_peak = None
        if peak is not None and isinstance(score, (int, float)) and score < peak:
            chosen = self.rules.evaluate({**message.lead, "icp_score": peak}).destinations
            chosen_at_peak = frozenset(chosen) | owed_anyway
        unknown = {
            name: Delivered.from_value(value)
            for name, value in {**claim.lapsed, **claim.unknown}.items()
            if self._holds(name) and isinstance(value, dict)
        }
        owed = plan(deliveries, self.rules.policies, hashes, remembered, chosen_at_peak, unknown)
        attempt = Attempt(message, decision, deliveries, claim, owed, hashes, paused=paused)
        intended = frozenset(name for name in attempt.pending if self._holds(name))
        if unmarked := intended - marked.keys():  # held for the lead by a pause or a settle: one more write
            self.ledger.record_intent(claim, {name: Delivered(now, hashes[name], score) for name in unmarked})
        return dataclasses.replace(attempt, intended=intended, marked=frozenset(marked) | intended)

    def _payload_hash(self, message: RoutingMessage, destination: str) -> str:
        return payload_hash(self._destination(destination).payload(message.lead, message.received_at))

    def _holds(self, destination: str) -> bool:
        """A lost answer of this destination waits for an operator instead of being sent again."""
        return self.unknown_outcomes.get(destination) == HOLD

    @staticmethod
    def _with(decision: Decision, carried: tuple[str, ...]) -> Decision:
        extra = tuple(name for name in carried if name not in decision.destinations)
        return Decision(decision.destinations + extra) if extra else decision

    def _destination(self, name: str) -> WebhookDestination | HubSpotContacts:
        return self.hubspot if name == "hubspot" else self.webhooks[name]

    def _supersede(self, attempt: Attempt) -> str:
        if attempt.lease is not None:  # frees the lease; the newer callback's outcome stays
            unknown, intents_done = self._unknown_marks(attempt, attempt.lease, {})
            self.ledger.complete(attempt.lease, {}, unknown=unknown, intents_done=intents_done)
        count("CallbackSuperseded")
        logger.info("an older callback of the lead was superseded", extra={"lead_key": attempt.message.lead_key})
        return "superseded"

    def _wait_for_lease(self, record: QueueRecord, busy: Busy) -> str:
        """Another invocation is routing this lead: wait in the queue a little, never toward the DLQ."""
        count("RoutingLeaseBusy")
        seconds = min(busy.seconds, IN_FLIGHT_WAIT_SECONDS * record.receive_count)
        return self._wait(record, seconds, "in_flight: another invocation is routing this lead")

    def _wait_for_resume(self, record: QueueRecord, attempt: Attempt, paused_now: tuple[str, ...] = ()) -> str:
        """A destination the lead is owed is paused: wait in the queue, longer with each receive, never the DLQ.

        `paused_now`: destinations that asked for the pause in this attempt (HubSpot's daily limit).
        """
        held = attempt.held or paused_now
        for name in held:
            count("DeliveryHeld", destination=name)
        logger.info(
            "delivery held: destination paused", extra={"lead_key": attempt.message.lead_key, "destinations": held}
        )
        if attempt.lease is None and record.receive_count == 1:  # the claimed path marks it in its own write
            self.ledger.mark_held(attempt.message.lead_key, held, attempt.message.received_at)
        seconds = min(MAX_WAIT_SECONDS, self.settings.destination_pause_wait_seconds * record.receive_count)
        return self._wait(record, seconds, f"paused: {', '.join(held)}")

    def _wait(self, record: QueueRecord, seconds: int, reason: str) -> str:
        max_receives = self.settings.routing_queue_max_receive_count
        if self.routing_queue.hold(record.body, record.receipt_handle, record.receive_count, max_receives, seconds):
            return "requeued"
        raise RetryLater(reason)

    def _route(self, record: QueueRecord, attempt: Attempt) -> Outcome:
        """Deliver what is owed, then record deliveries and outcome and free the lease (one write)."""
        sent: dict[str, DeliveryResult] = {}
        try:
            if "hubspot" in attempt.pending:
                sent["hubspot"] = self._hubspot_result(record, attempt)
            if record.message_id not in self._sent:  # not in the batch start saw
                self._send_webhooks({record.message_id: attempt})
            sent |= self._sent.pop(record.message_id, {})
            if record.message_id in self._errors:
                raise self._errors.pop(record.message_id)
        except BaseException:
            self._record(attempt, sent, None)  # what was delivered is not sent again by the retry
            raise
        outcome = Outcome(attempt.message, attempt.decision)
        for name in attempt.decision.destinations:
            if name not in self.enabled:
                outcome.off.append(name)
            elif name == LEADS_TABLE_DESTINATION:
                outcome.results[name] = DELIVERED  # the outcome record itself
            elif name in sent:
                outcome.results[name] = sent[name]
            elif name in attempt.held:
                outcome.results[name] = PAUSED_RESULT
            else:
                outcome.results[name] = OWED_RESULTS[attempt.owed[name]]
        self._record(attempt, sent, outcome)
        return outcome

    def _record(self, attempt: Attempt, sent: dict[str, DeliveryResult], outcome: Outcome | None) -> None:
        message = attempt.message
        if attempt.lease is None:  # nothing to deliver: the outcome is the only write
            if outcome is not None:
                item = self.leads.record_routing(message.lead_key, message.callback_id, outcome.record())
                # Still paused: the callback that was held (routed_received_at is not moved here) delivers it.
                ready = self.enabled - self.paused
                if not attempt.decision.incomplete:
                    outcome.held_elsewhere = tuple(name for name in held_markers(item) if name in ready)
            return
        score, now = _score(message), int(time.time())
        delivered = {
            name: Delivered(now, attempt.payload_hashes[name], score)
            for name, result in sent.items()
            if result.delivered
        }
        lease = attempt.lease
        unknown, intents_done = self._unknown_marks(attempt, lease, sent)
        # The outcome describes this callback: it is not written over a newer callback's enrichment.
        newest = attempt.lease.callback_id in ("", message.callback_id)
        record = outcome.record() if outcome is not None and newest else None
        # for the next callback: what a pause holds, the pause HubSpot asked for in this attempt included
        waiting = (*attempt.held, *(name for name, result in sent.items() if result.status is Status.PAUSED))
        held: dict[str, str | None] = {name: message.received_at for name in waiting}
        held |= {name: None for name in delivered if name in attempt.lease.held}  # made: no longer owed
        complete = self.ledger.complete
        callback_id = message.callback_id
        if not complete(lease, delivered, message.received_at, record, callback_id, held, unknown, intents_done):
            # Our lease lapsed and another invocation took the lead over: it may repeat these sends (the
            # Idempotency-Key is for that); the ledger recorded them for later attempts.
            logger.warning(
                "delivery lease lost before the deliveries were recorded",
                extra={"lead_key": message.lead_key, "destinations": sorted(delivered)},
            )
            count("DeliveryLeaseLost")

    def _unknown_marks(
        self, attempt: Attempt, lease: Lease, sent: dict[str, DeliveryResult]
    ) -> tuple[dict[str, dict[str, Any] | None], list[str]]:
        """The unknown_<destination> marks to set (a value) or clear (None), and the intents whose outcome is now
        known or recorded as unknown. An intended delivery without a result (a send that raised) keeps its
        intent: the next claim treats it as unknown."""
        unknown: dict[str, dict[str, Any] | None] = {}
        done: list[str] = []
        unanswered = {name for name in attempt.intended if name not in sent}  # a send raised: its intent stays
        for name in attempt.marked - unanswered:
            result = sent.get(name)
            done.append(name)
            if result is not None and result.status is Status.UNKNOWN:
                entry = Delivered(int(time.time()), attempt.payload_hashes[name], _score(attempt.message))
                unknown[name] = {**entry.to_value(), "reason": result.reason}
        for name, intent in lease.lapsed.items():  # intents of an invocation that ended before recording them
            if name not in unanswered:  # (this attempt's own intent of a new payload may have replaced it)
                done.append(name)
            if self._holds(name) and isinstance(intent, dict) and self._may_have_gone(lease, name, intent):
                unknown[name] = {**intent, "reason": LAPSED_REASON}
        for name, result in sent.items():  # a new payload delivered (on_change) settles an older unknown one
            if result.delivered and name in lease.unknown:
                unknown[name] = None
        for name, value in unknown.items():
            if value is not None and name not in lease.unknown:
                count("DeliveryUnknown")  # what the alarm watches (service dimension only)
                count("DeliveryUnknown", destination=name)
                logger.warning(
                    "delivery outcome unknown: not sent again until an operator settles it",
                    extra={"lead_key": lease.lead_key, "destination": name, "reason": value["reason"]},
                )
        return unknown, done

    def _may_have_gone(self, lease: Lease, destination: str, intent: dict[str, Any]) -> bool:
        """Whether an uncompleted intent may have been sent: not when the ledger shows that invocation had
        nothing to send (delivered once per lead before, or this very payload delivered last)."""
        before = lease.history.delivered.get(destination)
        if before is None:
            return True
        return self.rules.policy(destination) != ONCE_PER_LEAD and before.payload_hash != intent.get("hash")

    def _finish(self, record: QueueRecord, attempt: Attempt, outcome: Outcome) -> str:
        status = outcome.routing_status
        extra = {"lead_key": outcome.message.lead_key, "routing_status": status, "tier": outcome.message.lead["tier"]}
        tier = {"tier": extra["tier"]}
        if status == "skipped":  # one line per batch for the leads skipped, one for those routed
            count("LeadSkipped")
            summarize("leads skipped", outcome.message.lead_key, {**tier, "skipped_reason": outcome.skipped_reason})
            return "skipped"
        if status == "routed":
            count("LeadRouted")
            destinations = outcome.destination_statuses()
            summarize("leads routed", outcome.message.lead_key, {**tier, "destinations": destinations})
            return "routed"
        if status == "unknown":  # nothing left to retry: what is unknown waits for `clay-pipeline settle`
            logger.warning("lead routed, some outcomes unknown", extra={**extra, **outcome.destination_statuses()})
            return "unknown"
        retryable, permanent = outcome.failures(Status.RETRYABLE), outcome.failures(Status.PERMANENT)
        if status == "paused":  # the rest is delivered and recorded: only the paused destinations wait
            return self._wait_for_resume(record, attempt, tuple(outcome.failures(Status.PAUSED)))
        receives = record.receive_count
        if retryable and receives < self.settings.routing_queue_max_receive_count:
            summary = describe_failures({name: DeliveryResult(r.status, r.reason) for name, r in retryable.items()})
            logger.warning("lead goes back to the queue", extra={**extra, "failures": summary})
            raise RetryLater(f"retryable: {summary}")
        reason = "retries_exhausted" if retryable else "permanent_failure"
        self._dead_letter(record, reason, describe_failures({**permanent, **retryable}), outcome.destination_statuses())
        return "dead_lettered"

    def _dead_letter(self, record: QueueRecord, reason: str, detail: str, statuses: dict[str, str]) -> None:
        # The body is kept as-is so a redrive replays it; the lead's ledger keeps it from repeating sends.
        self.dead_letters.send_raw(
            record.body,
            attributes={
                "reason": reason,
                "detail": detail[:1000],
                "destinations": dump_json(statuses) if statuses else "",
                **origin_attributes(record),
            },
        )
        count("RouterDeadLettered", reason=reason)
        logger.warning("lead sent to the routing DLQ", extra={"reason": reason, "message_id": record.message_id})

    # -- deliveries ------------------------------------------------------------------------
    def _send_webhooks(self, attempts: dict[str, Attempt], with_hubspot: bool = False) -> None:
        """Send every webhook the attempts owe, each destination on its own runner, and the batch's HubSpot
        upserts alongside them (with_hubspot); results into self._sent and self._hubspot_results."""
        owing: dict[str, list[str]] = {}  # destination -> message ids, in batch order
        for message_id, attempt in attempts.items():
            self._sent.setdefault(message_id, {})
            for name in attempt.pending:
                if name != "hubspot":
                    owing.setdefault(name, []).append(message_id)
        # Each in a copy of the invocation's context: its per-thread log keys (observability) go with the sends.
        runs = [
            self.runners.submit(contextvars.copy_context().run, self._send_to, name, ids, attempts)
            for name, ids in owing.items()
        ]
        if with_hubspot:
            runs.append(self.runners.submit(contextvars.copy_context().run, self._upsert_to_hubspot, attempts))
        for run in runs:
            run.result()

    def _send_to(self, name: str, message_ids: list[str], attempts: dict[str, Attempt]) -> None:
        """One destination's sends of the batch: the first alone (a probe), then the rest fanned out."""
        first, rest = message_ids[0], message_ids[1:]
        self._send_one(name, first, attempts[first])
        if rest:
            futures = [
                self.senders.submit(contextvars.copy_context().run, self._send_one, name, mid, attempts[mid])
                for mid in rest
            ]
            for future in futures:
                future.result()

    def _send_one(self, name: str, message_id: str, attempt: Attempt) -> None:
        unavailable = self._unavailable.get(name)
        if unavailable is not None:
            # It just failed after its retries: the batch's other leads wait in the queue instead of
            # spending the invocation's time on the same timeouts and backoffs.
            result = unavailable
        else:
            try:
                result = self._send(attempt, self.webhooks[name])
            except Exception as error:  # raised by process(), once this lead's other results are recorded
                with self._results_lock:
                    self._errors.setdefault(message_id, error)
                return
            self._settle(name, result)
            if result.status in (Status.RETRYABLE, Status.UNKNOWN):  # the batch's other leads were not sent
                self._unavailable.setdefault(name, DeliveryResult(Status.RETRYABLE, result.reason, result.retry_after))
        with self._results_lock:
            self._sent[message_id][name] = result

    def _send(self, attempt: Attempt, destination: WebhookDestination) -> DeliveryResult:
        """One destination with its retries (on a delivery thread)."""
        key = self._idempotency_key(attempt, destination.name)
        lead = attempt.message.lead
        resend = not self._holds(destination.name)

        def deliver(timeout: float) -> DeliveryResult:
            result = destination.deliver(lead, key, timeout)
            if result.status is Status.UNKNOWN and resend:  # a repeat is acceptable here (same Idempotency-Key)
                return DeliveryResult(Status.RETRYABLE, result.reason)
            return result

        return self.retry.run(deliver, self.deadline)

    def _idempotency_key(self, attempt: Attempt, destination: str) -> str:
        lead_key = attempt.message.lead_key
        if self.rules.policy(destination) == ONCE_PER_LEAD:
            return idempotency_key(lead_key, destination)
        return idempotency_key(f"{lead_key}#{attempt.payload_hashes[destination]}", destination)

    def _settle(self, name: str, result: DeliveryResult) -> None:
        if result.delivered:
            count("DeliverySucceeded", destination=name)
        else:
            count("DeliveryFailed", destination=name)
            logger.info(
                "delivery failed",
                extra={"destination": name, "status": str(result.status), "reason": result.reason},
            )

    def _hubspot_result(self, record: QueueRecord, attempt: Attempt) -> DeliveryResult:
        if record.message_id not in self._hubspot_results:  # not in the batch start saw
            self._upsert_to_hubspot({record.message_id: attempt})
        return self._hubspot_results[record.message_id]

    def _upsert_to_hubspot(self, attempts: dict[str, Attempt]) -> None:
        """Upsert, in batches, the contact of every attempt that owes HubSpot one; each result by its record.

        Each contact has its own outcome: one HubSpot refuses fails alone. When HubSpot says to stop
        (its daily limit, a property it does not have) HubSpot is paused and every lead waits for it.
        """
        owing = {message_id: a.message for message_id, a in attempts.items() if "hubspot" in a.pending}
        if not owing:
            return
        by_email = self._upsert_contacts(list(owing.values()))
        for message_id, message in owing.items():
            result = by_email[message.lead["email"]]
            self._settle("hubspot", result)
            self._hubspot_results[message_id] = result
        stops = {result.reason: result for result in by_email.values() if result.status is Status.PAUSED}
        for result in stops.values():
            self._pause_hubspot(result)

    def _upsert_contacts(self, messages: list[RoutingMessage]) -> dict[str, DeliveryResult]:
        """One contact per email (HubSpot refuses a batch naming a contact twice: the newest enrichment wins)."""
        contacts: dict[str, Contact] = {}
        for message in sorted(messages, key=lambda m: m.received_at):
            contacts[message.lead["email"]] = self.hubspot.contact(message.lead, message.received_at)
        results = dict.fromkeys(contacts, DeliveryResult(Status.RETRYABLE, "out_of_time"))
        pending = dict(contacts)
        size = self.settings.hubspot_batch_size

        def send(timeout: float) -> DeliveryResult:
            batch = list(pending.values())
            for start in range(0, len(batch), size):
                chunk = batch[start : start + size]
                stop = next((r for r in results.values() if r.status is Status.PAUSED), None)
                if stop is not None:  # HubSpot said to stop (its daily limit): the rest is not sent to be refused
                    results.update(dict.fromkeys((contact.email for contact in chunk), stop))
                    continue
                results.update(self.hubspot.upsert(chunk, timeout, self.deadline))
            for email in list(pending):
                if results[email].status is not Status.RETRYABLE:
                    del pending[email]
            # The slowest Retry-After among what is left decides the wait before the next attempt.
            return max((results[e] for e in pending), key=lambda r: r.retry_after or 0.0, default=DELIVERED)

        self.retry.run(send, self.deadline)
        return results

    def _pause_hubspot(self, result: DeliveryResult) -> None:
        """HubSpot said to stop: pause it for as long as it said (the leads wait in RoutingQueue, never the DLQ)."""
        until = int(time.time() + (result.retry_after or 0))
        logger.error(
            "HubSpot is paused: " + result.detail,
            extra={
                "destination": "hubspot",
                "reason": result.reason,
                "until": datetime.fromtimestamp(until, UTC).isoformat(),
            },
        )
        count("DestinationAutoPaused", destination="hubspot", reason=result.reason)
        self.paused = self.paused | {"hubspot"}
        try:
            self.switch.pause("hubspot", by="router", reason=result.detail, until=until)
        except (ClientError, BotoCoreError) as error:  # the leads still wait: their results say paused
            logger.warning("could not write the pause switch", extra={"error": str(error)})
