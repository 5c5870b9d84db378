"""What a lead is owed: the rules' choice, pause filtering, held carry-over, peak-score re-evaluation, the plan.

The router (services/router.py) asks these functions, around its two ledger writes:
1. `RoutingConfig.choose`: the destinations the rules choose (plus those a pause held for the lead), the ones
   that are on, and the ones an operator paused. Nothing to claim when none is on, or all are paused.
2. `RoutingConfig.intents`: before the claim, the intent of every delivery to a "hold" destination
   (UNKNOWN_OUTCOME_POLICIES), written in the claim's own write.
3. `RoutingConfig.plan`: once the lead is claimed (core/policies.Lease), what each chosen destination is owed
   under its policy: what a pause held is added, a lower score is re-evaluated at the lead's peak score, and
   a held delivery whose outcome is unknown is not owed again (core/policies.plan).
4. After sending, `RoutingConfig.unknown_marks`: the deliveries whose outcome is now unknown (and the
   intents whose outcome is known), for the complete write.

A pause delays a delivery, it never drops one: what a pause held is marked on the lead's item
(`held_<destination>`) and whichever callback of the lead is routed next delivers it, even if its own rules
would not choose that destination.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from clay_pipeline.core.deliveries import DeliveryResult, Status
from clay_pipeline.core.policies import Busy, Delivered, Lease, Owed, peak_score, plan
from clay_pipeline.core.routing_message import RoutingMessage
from clay_pipeline.core.rules import HOLD, ONCE_PER_LEAD, Decision, RuleSet, UnknownOutcome, parse_unknown_outcomes

LEADS_TABLE_DESTINATION = "leads_table"  # the outcome record itself: always written, never "off"
LAPSED_REASON = "ended_before_recording"  # an intent found by a later claim: its invocation died after it
HashOf = Callable[[str], str]  # destination -> hash of the payload it receives for this message


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
    marked: frozenset[str] = frozenset()  # destinations whose intent this attempt wrote (ledger.SENDING_PREFIX)

    @classmethod
    def superseded_by_newer(cls, message: RoutingMessage) -> Attempt:
        return cls(message, Decision(()), (), superseded=True)

    @property
    def lease(self) -> Lease | None:
        return self.claim if isinstance(self.claim, Lease) else None

    @property
    def needs_claim(self) -> bool:
        """Something may be sent now: a delivery is chosen and not every one is paused."""
        return bool(self.deliveries) and self.paused != frozenset(self.deliveries)

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


@dataclass(frozen=True)
class UnknownMarks:
    """For the complete write: unknown_<destination> marks to set (a value) or clear (None), the intents whose
    outcome is now known or recorded as unknown, and the destinations newly unknown (for the alarm)."""

    unknown: dict[str, dict[str, Any] | None]
    intents_done: list[str]
    newly_unknown: dict[str, str]  # destination -> reason


@dataclass(frozen=True)
class RoutingConfig:
    """The router's decisions, set up at cold start from its settings."""

    rules: RuleSet
    unknown_outcomes: Mapping[str, UnknownOutcome]
    mark_days: int

    @classmethod
    def from_settings(
        cls,
        rules: str,
        policies: str,
        required_fields: str,
        unknown_outcomes: str,
        mark_days: int,
        salesforce: bool = False,
    ) -> RoutingConfig:
        """ROUTING_RULES, DELIVERY_POLICIES, ROUTING_REQUIRED_FIELDS, UNKNOWN_OUTCOME_POLICIES, DELIVERY_MARK_DAYS;
        ConfigError naming the setting and the problem. `salesforce`: the default rules include Salesforce's
        (core/rules.default_rules)."""
        rule_set = RuleSet.from_setting(rules, policies, required_fields, salesforce)
        return cls(rule_set, parse_unknown_outcomes(unknown_outcomes), mark_days)

    def holds(self, destination: str) -> bool:
        """A lost answer of this destination waits for an operator instead of being sent again."""
        return self.unknown_outcomes.get(destination) == HOLD

    def choose(
        self, message: RoutingMessage, enabled: frozenset[str], paused: frozenset[str], carried: tuple[str, ...] = ()
    ) -> Attempt:
        """The rules' choice (plus `carried`: what a pause held for the lead), before any claim.

        An incomplete row delivers nothing, not even what a pause held: the complete row brings it.
        """
        decision = self.rules.evaluate(message.lead, message.sent)
        if decision.incomplete:
            return Attempt(message, decision, ())
        decision = with_carried(decision, carried)
        deliveries = tuple(
            name for name in decision.destinations if name in enabled and name != LEADS_TABLE_DESTINATION
        )
        return Attempt(message, decision, deliveries, paused=frozenset(deliveries) & paused)

    def intents(self, choice: Attempt, hash_of: HashOf, now: int) -> dict[str, Delivered]:
        """The intent of every delivery this lease may make to a "hold" destination, in the claim's own write: a
        later claim that finds one uncompleted knows it may have gone out. Those found not owed are cleared by
        the complete write."""
        score = choice.message.score
        return {
            name: Delivered(now, hash_of(name), score)
            for name in choice.deliveries
            if name not in choice.paused and self.holds(name)
        }

    def plan(
        self,
        choice: Attempt,
        lease: Lease,
        marked: Mapping[str, Delivered],
        context: PlanContext,
    ) -> tuple[Attempt, dict[str, Delivered]]:
        """What the claimed lead is owed, and the intents still to record before sending (those of deliveries a
        pause or a settle held for the lead: the claim did not know them)."""
        message = choice.message
        if lease.history.supersedes(message.received_at):
            return dataclasses.replace(choice, claim=lease, superseded=True, marked=frozenset(marked)), {}
        decision, deliveries, paused = choice.decision, choice.deliveries, choice.paused
        held = tuple(name for name in lease.held if name in context.enabled and name not in deliveries)
        if held:  # an earlier callback's pause held these: this one delivers them
            decision = with_carried(decision, held)
            deliveries += held
            paused = frozenset(deliveries) & context.paused
        owed_anyway = frozenset((*context.carried, *lease.held))  # chosen when they were held: never withheld now
        hashes = {name: context.hash_of(name) for name in deliveries}
        remembered = lease.history.remembered(context.now, self.mark_days)
        peak, score = peak_score(remembered), message.lead.get("icp_score")
        chosen_at_peak = None
        if peak is not None and isinstance(score, (int, float)) and score < peak:
            chosen = self.rules.evaluate({**message.lead, "icp_score": peak}).destinations
            chosen_at_peak = frozenset(chosen) | owed_anyway
        unknown = {
            name: Delivered.from_value(value)
            for name, value in {**lease.lapsed, **lease.unknown}.items()
            if self.holds(name) and isinstance(value, dict)
        }
        owed = plan(deliveries, self.rules.policies, hashes, remembered, chosen_at_peak, unknown)
        attempt = Attempt(message, decision, deliveries, lease, owed, hashes, paused=paused)
        intended = frozenset(name for name in attempt.pending if self.holds(name))
        now = int(context.now)
        to_record = {name: Delivered(now, hashes[name], message.score) for name in intended - marked.keys()}
        return dataclasses.replace(attempt, intended=intended, marked=frozenset(marked) | intended), to_record

    def idempotency_basis(self, attempt: Attempt, destination: str) -> str:
        """The same for every repeat of one delivery: the lead key for once_per_lead, the lead key and payload
        hash for on_change (webhooks.idempotency_key hashes it with the destination)."""
        lead_key = attempt.message.lead_key
        if self.rules.policy(destination) == ONCE_PER_LEAD:
            return lead_key
        return f"{lead_key}#{attempt.payload_hashes[destination]}"

    def unknown_marks(
        self, attempt: Attempt, lease: Lease, sent: Mapping[str, DeliveryResult], now: int
    ) -> UnknownMarks:
        """The unknown_<destination> marks to set or clear, and the intents whose outcome is now known or recorded
        as unknown. An intended delivery without a result (a send that raised) keeps its intent: the next claim
        treats it as unknown. `sent`: this attempt's result per destination."""
        unknown: dict[str, dict[str, Any] | None] = {}
        done: list[str] = []
        unanswered = {name for name in attempt.intended if name not in sent}  # a send raised: its intent stays
        for name in attempt.marked - unanswered:
            result = sent.get(name)
            done.append(name)
            if result is not None and result.status is Status.UNKNOWN:
                entry = Delivered(now, attempt.payload_hashes[name], attempt.message.score)
                unknown[name] = {**entry.to_value(), "reason": result.reason}
        for name, intent in lease.lapsed.items():  # intents of an invocation that ended before recording them
            if name not in unanswered:  # (this attempt's own intent of a new payload may have replaced it)
                done.append(name)
            if self.holds(name) and isinstance(intent, dict) and self.may_have_gone(lease, name, intent):
                unknown[name] = {**intent, "reason": LAPSED_REASON}
        for name, result in sent.items():  # a new payload delivered (on_change) settles an older unknown one
            if result.delivered and name in lease.unknown:
                unknown[name] = None
        newly = {
            name: str(value["reason"])
            for name, value in unknown.items()
            if value is not None and name not in lease.unknown
        }
        return UnknownMarks(unknown, done, newly)

    def may_have_gone(self, lease: Lease, destination: str, intent: Mapping[str, Any]) -> bool:
        """Whether an uncompleted intent may have been sent: not when the ledger shows that invocation had
        nothing to send (delivered once per lead before, or this very payload delivered last)."""
        before = lease.history.delivered.get(destination)
        if before is None:
            return True
        return self.rules.policy(destination) != ONCE_PER_LEAD and before.payload_hash != intent.get("hash")


@dataclass(frozen=True)
class PlanContext:
    """What `RoutingConfig.plan` needs beside the claim: this invocation's destinations, the clock, the hashes."""

    enabled: frozenset[str]
    paused: frozenset[str]
    hash_of: HashOf
    now: float  # epoch seconds
    carried: tuple[str, ...] = ()  # destinations a pause held for the lead, delivered whatever the rules choose


def with_carried(decision: Decision, carried: tuple[str, ...]) -> Decision:
    """The rules' choice plus the destinations carried over (a pause held them for the lead)."""
    extra = tuple(name for name in carried if name not in decision.destinations)
    return Decision(decision.destinations + extra) if extra else decision


def held_to_deliver(
    held: Mapping[str, str], attempt: Attempt, enabled: frozenset[str], paused: frozenset[str]
) -> tuple[str, ...]:
    """Of the deliveries a pause held for the lead (its item's held_ markers), those a callback that chose nothing
    delivers now. Still paused: the callback that was held delivers it (routed_received_at is not moved)."""
    if attempt.decision.incomplete:
        return ()
    ready = enabled - paused
    return tuple(name for name in held if name in ready)
