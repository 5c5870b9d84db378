"""How a routed record ends, from its deliveries' results: the routing outcome and the record's ending.

Endings of a record (`ending`):
- routed / skipped / partial with nothing left to retry: processed;
- every delivery made or held, some with an unknown outcome: processed ("unknown"); the lead waits for
  `clay-pipeline settle`;
- a destination it owes is paused (by an operator, or by the router when a destination said to stop):
  "paused", the record waits in the queue (never toward the DLQ);
- a retryable failure (429, 5xx, a request that never left) after the in-invocation retries: Wait (back to
  the queue, a failure; delay 0: visible again after RoutingQueue's visibility timeout); on its last receive
  DeadLetter("retries_exhausted") instead, with what failed;
- a permanent failure (other 4xx): DeadLetter("permanent_failure") with the reasons. Nothing delivered is
  lost: the DLQ has the lead, and its ledger keeps a redrive from repeating what was delivered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clay_pipeline.core.deliveries import DELIVERED, DeliveryResult, Status
from clay_pipeline.core.outcomes import DeadLetter, Wait
from clay_pipeline.core.policies import Delivered, Owed
from clay_pipeline.core.routing_message import RoutingMessage
from clay_pipeline.core.routing_plan import LEADS_TABLE_DESTINATION, Attempt
from clay_pipeline.core.rules import Decision

PAUSED_RESULT = DeliveryResult(Status.PAUSED, "paused")
OWED_RESULTS = {
    Owed.ALREADY_DELIVERED: DeliveryResult(Status.DELIVERED, Owed.ALREADY_DELIVERED.value),
    Owed.UNCHANGED: DeliveryResult(Status.DELIVERED, Owed.UNCHANGED.value),
    Owed.WITHHELD: DeliveryResult(Status.WITHHELD, Owed.WITHHELD.value),
    Owed.UNKNOWN: DeliveryResult(Status.UNKNOWN, Owed.UNKNOWN.value),
}


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

    def record(self, routed_at: str) -> dict[str, Any]:
        """The LEADS_TABLE attributes; None removes one (skipped_reason once the lead is routed)."""
        return {
            "routing_status": self.routing_status,
            "tier": self.message.lead.get("tier"),
            "icp_score": self.message.lead.get("icp_score"),
            "routes": list(self.decision.destinations),
            "destinations": self.destination_statuses(),
            "skipped_reason": self.skipped_reason,
            "routed_at": routed_at,
        }


def build_outcome(attempt: Attempt, sent: Mapping[str, DeliveryResult], enabled: frozenset[str]) -> Outcome:
    """Each chosen destination's result: sent now, held by a pause, or what the ledger says it was owed."""
    outcome = Outcome(attempt.message, attempt.decision)
    for name in attempt.decision.destinations:
        if name not in enabled:
            outcome.off.append(name)
        elif name == LEADS_TABLE_DESTINATION:
            outcome.results[name] = DELIVERED  # the outcome record itself
        elif name in sent:
            outcome.results[name] = sent[name]
        elif name in attempt.held:
            outcome.results[name] = PAUSED_RESULT
        else:
            outcome.results[name] = OWED_RESULTS[attempt.owed[name]]
    return outcome


def describe_failures(failures: Mapping[str, DeliveryResult]) -> str:
    return "; ".join(
        f"{name}: {result.reason}" + (f" ({result.detail})" if result.detail else "")
        for name, result in failures.items()
    )


def retryable_summary(outcome: Outcome) -> str:
    """The retryable failures, without the destinations' own words (safe to log)."""
    retryable = outcome.failures(Status.RETRYABLE)
    return describe_failures({name: DeliveryResult(r.status, r.reason) for name, r in retryable.items()})


def ending(outcome: Outcome, receive_count: int, max_receive_count: int) -> str | Wait | DeadLetter:
    """How the record ends (the module docstring): a status it is processed with ("routed", "skipped",
    "unknown"), "paused" (it waits for the destination), Wait or DeadLetter."""
    status = outcome.routing_status
    if status in ("skipped", "routed", "unknown", "paused"):
        return status
    retryable, permanent = outcome.failures(Status.RETRYABLE), outcome.failures(Status.PERMANENT)
    if retryable and receive_count < max_receive_count:
        return Wait(f"retryable: {retryable_summary(outcome)}", failure=True)
    reason = "retries_exhausted" if retryable else "permanent_failure"
    return DeadLetter(reason, describe_failures({**permanent, **retryable}))


def delivered_entries(attempt: Attempt, sent: Mapping[str, DeliveryResult], now: int) -> dict[str, Delivered]:
    """The ledger entries of what this attempt delivered."""
    score = attempt.message.score
    return {
        name: Delivered(now, attempt.payload_hashes[name], score) for name, result in sent.items() if result.delivered
    }


def held_changes(attempt: Attempt, sent: Mapping[str, DeliveryResult]) -> dict[str, str | None]:
    """The held_<destination> marks for the next callback: what a pause holds (set to this callback's
    received_at), the pauses a destination asked for in this attempt included; what was made now (cleared)."""
    lease = attempt.lease
    waiting = (*attempt.held, *(name for name, result in sent.items() if result.status is Status.PAUSED))
    held: dict[str, str | None] = {name: attempt.message.received_at for name in waiting}
    held_before = lease.held if lease is not None else {}
    held |= {name: None for name, result in sent.items() if result.delivered and name in held_before}
    return held
