"""A lead's claim and its record: the router's writes to the lead's item around its deliveries.

Clay calls a row back again whenever a column re-runs, so exactly-once is per lead, not per callback. The
ledger lives on the lead's LeadsTable item (adapters/ledger.LeadLedger): one conditional UpdateItem takes
the lead's lease (only if no unexpired lease is held) and returns what was delivered before, with which
payload hash, score and callback; the router sends only what is owed (core/routing_plan.py); one UpdateItem
then adds this attempt's deliveries, writes the routing outcome and frees the lease (only if it still owns
it). So a routed lead costs two writes and no read, and a retry of the batch, a redrive from the DLQ or
another callback of the same lead sends only what is still owed. A third write, the intent, is made before
the send only when a delivery to a "hold" destination is owed that the claim did not know of.

The batch's first write on a lead's item (the claim, else the outcome, else the mark of a held delivery) also
completes the callback's claim of the version it routes (and of the versions it superseded in the batch):
adapters/leads_table.accept_versions. The callback writes once; its duplicates are recognised from then on.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from clay_pipeline.adapters.leads_table import LeadsTable
from clay_pipeline.adapters.ledger import LeadLedger, held_markers
from clay_pipeline.core.deliveries import DeliveryResult
from clay_pipeline.core.policies import Lease
from clay_pipeline.core.routing_message import RoutingMessage
from clay_pipeline.core.routing_outcome import Outcome, delivered_entries, held_changes
from clay_pipeline.core.routing_plan import Attempt, PlanContext, RoutingConfig, UnknownMarks, held_to_deliver
from clay_pipeline.observability import count, logger
from clay_pipeline.services.destinations import Destinations


@dataclass
class LeadClaims:
    """This invocation's claims and records, with the destinations on and paused as it sees them."""

    config: RoutingConfig
    ledger: LeadLedger
    leads: LeadsTable
    destinations: Destinations
    enabled: frozenset[str]
    paused: frozenset[str]  # grows when a destination says to stop in this batch (BatchDeliveries.on_pause)
    # lead key -> callback ids whose claims the batch's next write on the lead's item completes (register)
    accepting: dict[str, list[str]] = field(default_factory=dict)

    def pause(self, destination: str) -> None:
        self.paused = self.paused | {destination}

    def register(self, message: RoutingMessage, superseded: Iterable[RoutingMessage] = ()) -> None:
        """The callback this record routes, and those of the lead it superseded in the batch, are accepted by the
        next write on the lead's item."""
        callback_ids = [message.callback_id, *(older.callback_id for older in superseded)]
        self.accepting[message.lead_key] = [*self.accepting.get(message.lead_key, []), *callback_ids]

    def take_accepting(self, lead_key: str) -> list[str]:
        """The callback ids a write on the lead's item about to be made completes (none the second time)."""
        return self.accepting.pop(lead_key, [])

    def claim(self, message: RoutingMessage, carried: tuple[str, ...] = ()) -> Attempt:
        """Choose the destinations, claim the lead and work out what it is owed (no claim when nothing can be
        sent now). `carried`: destinations a pause held for the lead, delivered whatever the rules choose now."""
        choice = self.config.choose(message, self.enabled, self.paused, carried)
        if not choice.needs_claim:
            return choice

        def hash_of(name: str) -> str:
            return self.destinations.payload_hash(message, name)

        now = time.time()
        marked = self.config.intents(choice, hash_of, int(now))
        accepting = self.accepting.get(message.lead_key, [])
        claim = self.ledger.claim(message.lead_key, marked, accepting)
        if not isinstance(claim, Lease):  # nothing written: the claims are completed by a later receive
            return Attempt(message, choice.decision, choice.deliveries, claim, paused=choice.paused)
        self.take_accepting(message.lead_key)
        context = PlanContext(self.enabled, self.paused, hash_of, now, carried)
        attempt, unrecorded = self.config.plan(choice, claim, marked, context)
        if unrecorded:  # held for the lead by a pause or a settle: one more write
            self.ledger.record_intent(claim, unrecorded)
        return attempt

    def supersede(self, attempt: Attempt) -> None:
        """Free the lease of a callback older than the lead's newest; the newer callback's outcome stays."""
        if attempt.lease is not None:
            marks = self._unknown_marks(attempt, attempt.lease, {})
            self.ledger.complete(attempt.lease, {}, unknown=marks.unknown, intents_done=marks.intents_done)

    def record(self, attempt: Attempt, sent: dict[str, DeliveryResult], outcome: Outcome | None) -> None:
        """Add the deliveries, write the outcome (None: a send raised) and free the lease, in one write."""
        message = attempt.message
        routed_at = datetime.now(UTC).isoformat()
        if attempt.lease is None:  # nothing to deliver: the outcome is the only write
            if outcome is not None:
                accepting = self.take_accepting(message.lead_key)
                item = self.leads.record_routing(
                    message.lead_key, message.callback_id, outcome.record(routed_at), accepting
                )
                outcome.held_elsewhere = held_to_deliver(held_markers(item), attempt, self.enabled, self.paused)
            return
        lease = attempt.lease
        delivered = delivered_entries(attempt, sent, int(time.time()))
        marks = self._unknown_marks(attempt, lease, sent)
        # The outcome describes this callback: it is not written over a newer callback's enrichment.
        newest = lease.callback_id in ("", message.callback_id)
        record = outcome.record(routed_at) if outcome is not None and newest else None
        held = held_changes(attempt, sent)
        complete = self.ledger.complete
        callback_id = message.callback_id
        if not complete(
            lease, delivered, message.received_at, record, callback_id, held, marks.unknown, marks.intents_done
        ):
            # Our lease lapsed and another invocation took the lead over: it may repeat these sends (the
            # Idempotency-Key is for that); the ledger recorded them for later attempts.
            logger.warning(
                "delivery lease lost before the deliveries were recorded",
                extra={"lead_key": message.lead_key, "destinations": sorted(delivered)},
            )
            count("DeliveryLeaseLost")

    def _unknown_marks(self, attempt: Attempt, lease: Lease, sent: dict[str, DeliveryResult]) -> UnknownMarks:
        marks = self.config.unknown_marks(attempt, lease, sent, int(time.time()))
        for name, reason in marks.newly_unknown.items():
            count("DeliveryUnknown")  # what the alarm watches (service dimension only)
            count("DeliveryUnknown", destination=name)
            logger.warning(
                "delivery outcome unknown: not sent again until an operator settles it",
                extra={"lead_key": lease.lead_key, "destination": name, "reason": reason},
            )
        return marks
