"""The router's decisions driven on plain data: what each callback of a lead is owed, across callbacks.

`PlainRouter` routes SQS events the way RoutingBatch does, calling only the pure core (routing_message,
routing_plan, routing_outcome): the lead's ledger is the core's own LeadHistory, carried from one callback to
the next with what `delivered_entries` and `held_changes` return. Nothing here stands in for DynamoDB or SQS:
the ledger's writes (conditions, leases, what is stored) are checked on moto in tests/integration.
Each delivery is "sent" by recording it; a test scripts a destination's results where it needs a failure.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from clay_pipeline.adapters.webhooks import HttpClient, idempotency_key
from clay_pipeline.config import RouterSettings
from clay_pipeline.core.deliveries import DELIVERED, DeliveryResult
from clay_pipeline.core.json_text import dump_json
from clay_pipeline.core.outcomes import DeadLetter, Wait
from clay_pipeline.core.policies import Delivered, LeadHistory, Lease, newer
from clay_pipeline.core.routing_message import RoutingMessage, newest_per_lead, parse_message
from clay_pipeline.core.routing_outcome import build_outcome, delivered_entries, ending, held_changes
from clay_pipeline.core.routing_plan import (
    LEADS_TABLE_DESTINATION,
    Attempt,
    PlanContext,
    RoutingConfig,
    held_to_deliver,
)
from clay_pipeline.queue_batch import QueueRecord
from clay_pipeline.services.destinations import Destinations
from tests.integration.test_router import RECEIVED_AT, parse_body, routing_record

ARN = "arn:aws:sqs:us-east-1:000000000000:RoutingQueue"
PLACEHOLDERS = {"STATE_TABLE": "state", "LEADS_TABLE": "leads", "ROUTING_QUEUE_URL": "q", "ROUTING_DLQ_URL": "dlq"}
WEBHOOKS = ("outreach", "nurture", "zapier", "slack")


def routing_setup(environ: dict[str, str]) -> tuple[RoutingConfig, Destinations]:
    """The router's decisions and destinations, as its cold start builds them from this environment."""
    settings = RouterSettings.from_env({**PLACEHOLDERS, **environ})
    config = RoutingConfig.from_settings(
        settings.routing_rules,
        settings.delivery_policies,
        settings.routing_required_fields,
        settings.unknown_outcome_policies,
        settings.delivery_mark_days,
        salesforce=bool(settings.salesforce_login_url),  # as the router's cold start: its default rule when on
    )
    return config, Destinations.from_settings(settings, HttpClient())


@dataclass
class LeadItem:
    """The lead as the callback stored it and the router left it: enrichment, outcome, ledger, held marks."""

    callback_id: str = ""
    received_at: str = ""
    callbacks: int = 0
    delivered: dict[str, Delivered] = field(default_factory=dict)
    routed_received_at: str = ""
    held: dict[str, str] = field(default_factory=dict)
    outcome: dict[str, Any] = field(default_factory=dict)

    def view(self) -> dict[str, Any]:
        """The item's attributes as the integration tests read them."""
        outcome = {name: value for name, value in self.outcome.items() if value is not None}
        held = {f"held_{name}": value for name, value in self.held.items()}
        deliveries = {name: entry.to_value() for name, entry in self.delivered.items()}
        return {"routing_status": "received", **outcome, **held, "deliveries": deliveries, "callbacks": self.callbacks}


@dataclass(frozen=True)
class Sent:
    """One delivery as its destination received it."""

    destination: str
    idempotency_key: str
    payload: Any

    def json(self) -> Any:
        return self.payload

    @property
    def headers(self) -> dict[str, str]:
        return {"idempotency-key": self.idempotency_key}


class PlainSinks:
    """What each destination was sent, in order."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.results: dict[str, list[DeliveryResult]] = {}  # destination -> scripted results, then delivered
        self.contacts: set[str] = set()  # emails HubSpot has a contact for

    def script(self, destination: str, *results: DeliveryResult) -> None:
        """The destination's next results (after them: delivered)."""
        self.results.setdefault(destination, []).extend(results)

    def deliver(self, destination: str, key: str, payload: Any, email: str = "") -> DeliveryResult:
        self.sent.append(Sent(destination, key, payload))
        scripted = self.results.get(destination) or []
        result = scripted.pop(0) if scripted else DELIVERED
        if email and result.delivered:
            self.contacts.add(email.lower())
        return result

    def calls(self) -> dict[str, int]:
        counts = {name: 0 for name in ("outreach", "nurture", "zapier", "hubspot", "slack")}
        for item in self.sent:
            counts[item.destination] += 1
        return counts

    def received(self, destination: str) -> list[Sent]:
        return [item for item in self.sent if item.destination == destination]


class PlainRouter:
    """RoutingBatch's flow on the pure core, with every destination on and a ledger of plain data."""

    arn = ARN

    def __init__(self, sinks: PlainSinks, off: tuple[str, ...] = (), **environ: str) -> None:
        self.config, self.destinations = routing_setup(environ)
        self.mapping = self.destinations.crms["hubspot"].mapping  # type: ignore[attr-defined]
        self.enabled = (self.destinations.names - frozenset(off)) | {LEADS_TABLE_DESTINATION}
        self.paused: frozenset[str] = frozenset()
        self.clock = time.time
        self.items: dict[str, LeadItem] = defaultdict(LeadItem)
        self.sinks = sinks
        self.dead: list[dict[str, Any]] = []

    # -- records, as the callback queues them ----------------------------------------------------------
    def record(
        self,
        lead: dict[str, Any],
        receive_count: int = 1,
        callback_id: str | None = None,
        received_at: str = RECEIVED_AT,
    ) -> dict[str, Any]:
        key = str(lead["lead_id"])
        callback_id = callback_id or f"{key}#h1"
        item = self.items[key]
        item.callbacks += 1
        if not item.received_at or not newer(item.received_at, received_at):  # the newest enrichment is stored
            item.callback_id, item.received_at = callback_id, received_at
        return routing_record(lead, callback_id, received_at, ARN, receive_count)

    def callback(self, number: int, lead: dict[str, Any], receive_count: int = 1) -> dict[str, Any]:
        received_at = (datetime.fromisoformat(RECEIVED_AT) + timedelta(minutes=number)).isoformat()
        return self.record(lead, receive_count, callback_id=f"{lead['lead_id']}#h{number}", received_at=received_at)

    def outcome(self, lead_key: str) -> dict[str, Any]:
        return self.items[lead_key].view()

    def dead_letters(self) -> list[dict[str, Any]]:
        return list(self.dead)

    def put_ledger(self, lead_key: str, deliveries: dict[str, Any]) -> None:
        """Deliveries an earlier invocation recorded for the lead."""
        self.items[lead_key].delivered = {name: Delivered.from_value(value) for name, value in deliveries.items()}

    # -- a batch ---------------------------------------------------------------------------------------
    def run(self, event: dict[str, Any]) -> list[str]:
        """Route the event's records; the ids of those that go back to the queue (as the handler reports)."""
        records = {raw["messageId"]: raw for raw in event["Records"]}
        messages: list[tuple[str, RoutingMessage]] = []
        for record_id, raw in records.items():
            try:
                messages.append((record_id, parse_message(raw["body"], datetime.now(UTC))))
            except DeadLetter as dead:
                self.dead.append({"reason": dead.reason, "detail": dead.detail, "body": parse_body(raw["body"])})
        selection = newest_per_lead(messages)
        failed = []
        for record_id, message in selection.newest.items():
            receives = QueueRecord.from_event(records[record_id]).receive_count
            if not self._route(message, receives):
                failed.append(record_id)
        return failed

    def _route(self, message: RoutingMessage, receives: int, carried: tuple[str, ...] = ()) -> bool:
        """One lead; False when its record goes back to the queue."""
        item = self.items[message.lead_key]
        choice = self.config.choose(message, self.enabled, self.paused, carried)
        if not choice.needs_claim:
            if choice.paused:  # every delivery paused: the lead waits, what the pause holds is marked
                item.held |= dict.fromkeys(choice.held, message.received_at)
                return False
            outcome = build_outcome(choice, {}, self.enabled)
            if item.callback_id in ("", message.callback_id):
                item.outcome = outcome.record(datetime.now(UTC).isoformat())
            if held := held_to_deliver(item.held, choice, self.enabled, self.paused):
                return self._route(message, receives, carried=held)
            return self._end(message, outcome, receives)
        history = LeadHistory(dict(item.delivered), item.routed_received_at)
        lease = Lease(message.lead_key, "plain", history, item.callback_id, dict(item.held))
        hash_of = self._hash_of(message)
        context = PlanContext(self.enabled, self.paused, hash_of, self.clock(), carried)
        attempt, _ = self.config.plan(choice, lease, self.config.intents(choice, hash_of, int(self.clock())), context)
        if attempt.superseded:
            return True
        sent = {name: self._deliver(name, attempt) for name in attempt.pending}
        outcome = build_outcome(attempt, sent, self.enabled)
        item.delivered |= delivered_entries(attempt, sent, int(self.clock()))
        item.routed_received_at = message.received_at
        for name, value in held_changes(attempt, sent).items():
            if value is None:
                item.held.pop(name, None)
            else:
                item.held[name] = value
        if lease.callback_id in ("", message.callback_id):
            item.outcome = outcome.record(datetime.now(UTC).isoformat())
        return self._end(message, outcome, receives)

    def _end(self, message: RoutingMessage, outcome: Any, receives: int) -> bool:
        end = ending(outcome, receives, 5)
        if isinstance(end, DeadLetter):
            statuses = dump_json(outcome.destination_statuses())
            body = {"lead_key": message.lead_key}
            self.dead.append({"reason": end.reason, "detail": end.detail, "destinations": statuses, "body": body})
            return True
        return not isinstance(end, Wait) and end != "paused"

    def _hash_of(self, message: RoutingMessage) -> Callable[[str], str]:
        return lambda name: self.destinations.payload_hash(message, name)

    def _deliver(self, name: str, attempt: Attempt) -> DeliveryResult:
        lead, received_at = attempt.message.lead, attempt.message.received_at
        key = idempotency_key(self.config.idempotency_basis(attempt, name), name)
        if name != "hubspot":
            return self.sinks.deliver(name, key, lead)
        contact = self.mapping.contact(lead, received_at)  # created with the owned fields, updated without
        return self.sinks.deliver(
            name, key, contact.input(new=contact.email.lower() not in self.sinks.contacts), contact.email
        )


class PlainSwitch:
    """The operator's pause switch, as the router reads it (no cache)."""

    def __init__(self, router: PlainRouter) -> None:
        self.router = router

    def pause(self, destination: str) -> None:
        self.router.paused = self.router.paused | {destination}

    def resume(self, destination: str) -> bool:
        paused = destination in self.router.paused
        self.router.paused = self.router.paused - {destination}
        return paused


def hubspot_inputs(sinks: PlainSinks) -> list[dict[str, Any]]:
    """Every contact input HubSpot received, in order."""
    return [item.payload for item in sinks.received("hubspot")]
