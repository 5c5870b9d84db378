"""What happened on the local stack, step by step, and the checks that it adds up: nothing lost, nothing twice.

`reconcile(stack)` counts what happened at every step from the facts each part recorded (the Clay
simulators, the pollers, the sinks, the tables and DLQs), not from the pipeline's metrics.

On the routine path (ClayEnrichmentPath=routine) RoutineReconciliation checks, from what the Clay API
simulator, the RoutingQueue poller and the sinks recorded: no lead in two runs; every lead the intake
accepted is in a run or the lead DLQ; every completed item was accepted for routing exactly once (one
callback id per lead among the routing messages, whether the webhook, the poller or both read the run) and
routed; every failed item, and every lead of a run that never finished, is in the lead DLQ; every forged
webhook was refused and every repeated one answered as a duplicate.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from clay_pipeline.adapters.dead_letter_queues import lead_id_of
from clay_pipeline.adapters.webhooks import idempotency_key
from clay_pipeline.core.policies import Delivered, payload_hash
from clay_pipeline.core.rules import ONCE_PER_LEAD, RuleSet
from local.sinks import Delivery
from local.stack import FINISHED, SOURCE_QUEUES, LocalStack

SUMMARY_SECTIONS = (
    ("intake (POST /leads)", ("leads posted", "accepted by intake", "rejected by intake")),
    ("sender -> Clay", ("duplicates skipped before Clay", "sent to Clay", "Clay 429s to the sender")),
    (
        "Clay -> callback",
        (
            "callbacks sent by Clay",
            "callbacks accepted",
            "duplicates dropped",
            "callbacks retried by Clay",
            "rows called back again: re-run column",
            "rows called back again: same body",
            "rows called back again: re-scored",
            "partial callbacks (one per column)",
            "rows with messy columns",
            "callbacks answered with warnings",
            "their leads routed or skipped",
        ),
    ),
    ("router", ("routed", "skipped (no destination)", "once-per-lead deliveries doubled")),
    ("dead letters", ("dead-lettered (LeadDLQ)", "dead-lettered (RoutingDLQ)")),
)
RESEND_LABELS = {
    "rerun": "rows called back again: re-run column",
    "resend": "rows called back again: same body",
    "rescore": "rows called back again: re-scored",
    "partial": "partial callbacks (one per column)",
}


@dataclass
class Summary:
    counts: dict[str, int]
    routed: dict[str, int]  # destination -> deliveries it received (leads_table: leads recorded)
    elapsed: float
    problems: list[str]
    policies: dict[str, str] = field(default_factory=dict)  # destination -> its delivery policy
    distinct_payloads: dict[str, int] = field(default_factory=dict)  # on-change destination -> distinct payloads
    sections: tuple[tuple[str, tuple[str, ...]], ...] = SUMMARY_SECTIONS

    @property
    def reconciles(self) -> bool:
        return not self.problems

    def table(self) -> str:
        """The counts by stage, then the verdict and any problem found."""
        sections: list[tuple[str, list[tuple[str, Any]]]] = [
            (title, [(label, self.counts[label]) for label in labels if label in self.counts])
            for title, labels in self.sections
        ]
        router = next(rows for title, rows in sections if title == "router")
        for name, count in self.routed.items():
            policy = self.policies.get(name, "")
            if name in self.distinct_payloads:
                label, value = (
                    f"routed to {name} ({policy}): calls / distinct",
                    f"{count} / {self.distinct_payloads[name]}",
                )
            else:
                label, value = f"routed to {name}" + (f" ({policy})" if policy else ""), str(count)
            router.append((label, value))
        sections.append(("", [("elapsed", f"{self.elapsed:.1f} s")]))
        width = max(len(label) for _, rows in sections for label, _ in rows) + 2
        lines = []
        for title, rows in sections:
            indent = "  " if title else ""
            lines += [title] if title else []
            lines += [f"{indent}{label.ljust(width + 2 - len(indent))}{str(value).rjust(8)}" for label, value in rows]
        verdict = "reconciled: nothing lost, nothing twice" if self.reconciles else "NOT reconciled:"
        return "\n".join([*lines, "", verdict, *(f"  - {problem}" for problem in self.problems)])


class Reconciliation:
    """Counts at every step and the checks that make them add up."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.problems: list[str] = []

    def summary(self) -> Summary:
        stack = self.stack
        clay = stack.clay
        clay_ids = clay.lead_ids()
        lead_dlq = stack.dead_letters("LeadDLQ")
        routing_dlq = stack.dead_letters("RoutingDLQ")
        lead_dlq_ids = {lead_id_of(m["body"]) for m in lead_dlq}
        routing_dlq_ids = {lead_id_of(m["body"], "lead_key") for m in routing_dlq}
        accepted_callbacks = clay.accepted_callbacks()
        table = stack.leads_table()
        statuses = Counter(str(item.get("routing_status")) for item in table.values())

        self._check_intake()
        self._check_clay(clay_ids, lead_dlq_ids)
        self._check_callbacks(clay_ids, clay.accepted_versions(), clay.versions_sent())
        self._check_routing(accepted_callbacks, table, routing_dlq_ids)
        warned = set(clay.warned())
        self._check_warned(warned, table, routing_dlq_ids)
        policies, distinct, doubled = self._check_destinations(table)
        for queue_id in SOURCE_QUEUES:
            if any((counts := stack.queue_counts(queue_id)).values()):
                self.problems.append(f"{queue_id} is not empty: {counts}")

        counts = {
            "leads posted": len(stack.posted),
            "accepted by intake": len(stack.accepted_ids),
            "rejected by intake": stack.rejected_rows,
            "duplicates skipped before Clay": max(0, len(stack.accepted_ids) - len(clay_ids) - len(lead_dlq)),
            "sent to Clay": len(clay_ids),
            "Clay 429s to the sender": clay.inbound[429],
            "callbacks sent by Clay": len(clay.callbacks),
            "callbacks accepted": len(accepted_callbacks),
            "duplicates dropped": len(clay.answered(duplicate=True)),
            "callbacks retried by Clay": sum(1 for c in clay.callbacks if c.attempt > 1),
            **{label: clay.resent[kind] for kind, label in RESEND_LABELS.items() if clay.resent[kind]},
            **(
                {
                    "rows with messy columns": len(clay.messy),
                    "callbacks answered with warnings": len(clay.warned()),
                    "their leads routed or skipped": sum(
                        1 for lead in warned if str(table.get(lead, {}).get("routing_status")) in FINISHED
                    ),
                }
                if clay.messy
                else {}
            ),
            "routed": statuses["routed"],
            "skipped (no destination)": statuses["skipped"],
            "once-per-lead deliveries doubled": doubled,
            "dead-lettered (LeadDLQ)": len(lead_dlq),
            "dead-lettered (RoutingDLQ)": len(routing_dlq),
        }
        routed_to = {**stack.sinks.counts(), "leads_table": len(table)}
        elapsed = time.monotonic() - stack.started_at
        return Summary(counts, routed_to, elapsed, self.problems, policies, distinct)

    def _check_intake(self) -> None:
        stack = self.stack
        if len(stack.accepted_ids) + stack.rejected_rows != len(stack.posted):
            self.problems.append(
                f"intake: {len(stack.posted)} posted but {len(stack.accepted_ids)} accepted"
                f" + {stack.rejected_rows} rejected"
            )

    def _check_clay(self, clay_ids: list[str], lead_dlq_ids: set[str]) -> None:
        twice = sorted(lead for lead, n in Counter(clay_ids).items() if n > 1)
        if twice:
            self.problems.append(f"sent to Clay more than once: {twice}")
        lost = set(self.stack.accepted_ids) - set(clay_ids) - lead_dlq_ids
        if lost:
            self.problems.append(f"accepted by intake but neither in Clay nor in LeadDLQ: {sorted(lost)}")

    def _check_callbacks(
        self, clay_ids: list[str], accepted: list[tuple[str, str]], sent: set[tuple[str, str]]
    ) -> None:
        """Every version of a row Clay called back with was accepted once (identical re-sends are duplicates)."""
        twice = sorted({lead for (lead, _), n in Counter(accepted).items() if n > 1})
        if twice:
            self.problems.append(f"the same callback body accepted more than once: {twice}")
        missing = set(clay_ids) - {lead for lead, _ in accepted}
        if missing:
            calls = "; ".join(
                f"{lead}: {', '.join(self.stack.clay.log.calls_of(lead)) or 'never called'}" for lead in sorted(missing)
            )
            self.problems.append(
                f"Clay rows whose callback was never accepted: {sorted(missing)} (their calls: {calls})"
            )
        abandoned = set(self.stack.clay.abandoned)  # Clay gave up on these calls: the column shows the error
        never = {(lead, version) for lead, version in sent - set(accepted) if lead not in abandoned}
        if never:
            self.problems.append(f"callback versions never accepted: {sorted({lead for lead, _ in never})}")

    def _check_routing(self, accepted: list[str], table: dict[str, dict[str, Any]], routing_dlq_ids: set[str]) -> None:
        unfinished = sorted(
            lead
            for lead in set(accepted)
            if lead not in routing_dlq_ids and str(table.get(lead, {}).get("routing_status")) not in FINISHED
        )
        if unfinished:
            self.problems.append(f"callbacks neither routed, skipped nor dead-lettered: {unfinished}")

    def _check_warned(self, warned: set[str], table: dict[str, dict[str, Any]], routing_dlq_ids: set[str]) -> None:
        """A callback answered with warnings was still accepted: its lead is stored and routed (or skipped), never
        dead-lettered for the columns it could not read."""
        lost = sorted(lead for lead in warned if lead not in table or lead in routing_dlq_ids)
        lost += sorted(
            lead for lead in warned if lead in table and str(table[lead].get("routing_status")) not in FINISHED
        )
        if lost:
            self.problems.append(f"callbacks answered with warnings but not routed: {lost}")

    def _check_destinations(self, table: dict[str, dict[str, Any]]) -> tuple[dict[str, str], dict[str, int], int]:
        """Each destination got what the lead's ledger says, under its policy.

        Returns each destination's policy, the distinct payloads of each on-change one, and how many
        leads a once-per-lead destination got more than once (0 when it reconciles).

        once_per_lead: each lead's Idempotency-Key at most once, and exactly the leads the ledger holds.
        on_change: no payload twice for a lead (one call per distinct mapped payload), and the last one
        each lead got is the one its ledger entry names.
        """
        env = self.stack.function_env("RouterFunction")
        policies = RuleSet.from_setting(env.get("ROUTING_RULES", ""), env.get("DELIVERY_POLICIES", "")).policies
        distinct: dict[str, int] = {}
        doubled = 0
        for destination in self.stack.sinks.destinations:
            ledger = {
                lead: Delivered.from_value(entry)
                for lead, item in table.items()
                if (entry := (item.get("deliveries") or {}).get(destination))
            }
            received = self.stack.sinks.delivered(destination)
            policy = policies[destination]
            if policy == ONCE_PER_LEAD:
                doubled += self._check_once_per_lead(destination, received, ledger)
            else:
                distinct[destination] = self._check_on_change(destination, received, ledger, table)
        return {name: str(policy) for name, policy in policies.items()}, distinct, doubled

    def _check_once_per_lead(self, destination: str, received: list[Delivery], ledger: dict[str, Delivered]) -> int:
        expected = {idempotency_key(lead, destination) for lead in ledger}
        keys = Counter(delivery.key for delivery in received)
        twice = [key for key, n in keys.items() if n > 1]
        if twice:
            self.problems.append(f"{destination}: {len(twice)} leads delivered more than once")
        if missing := expected - set(keys):
            self.problems.append(f"{destination}: {len(missing)} recorded deliveries never arrived")
        if unexpected := set(keys) - expected:
            self.problems.append(f"{destination}: {len(unexpected)} deliveries the router did not record")
        return len(twice)

    def _check_on_change(
        self,
        destination: str,
        received: list[Delivery],
        ledger: dict[str, Delivered],
        table: dict[str, dict[str, Any]],
    ) -> int:
        by_email = {str((item.get("enrichment") or {}).get("email", "")).lower(): lead for lead, item in table.items()}
        versions: list[tuple[str, str]] = []  # (lead, payload hash) per call, in arrival order
        mapping = self.stack.hubspot().mapping
        records = self.stack.salesforce_mapping() if destination == "salesforce" else None
        created: set[str] = set()
        reset: set[str] = set()  # contacts an update sent a rep-owned field to (it would undo a rep's work)
        for delivery in received:
            payload = delivery.payload
            if destination == "hubspot":  # what the router hashes: the update, without what only a create sends
                if delivery.key in created and mapping.create_only & set(payload.get("properties") or {}):
                    reset.add(delivery.key)
                created.add(delivery.key)
                payload = mapping.without_owned(payload)
                lead = by_email.get(delivery.key, delivery.key)
            elif records is not None:  # Salesforce: the key is the lead_id (the external id); the same check
                if delivery.key in created and records.create_only & set(payload):
                    reset.add(delivery.key)
                created.add(delivery.key)
                payload, lead = records.as_update(delivery.key, payload), delivery.key
            else:
                lead = str(payload.get("lead_id", delivery.key)) if isinstance(payload, dict) else delivery.key
            versions.append((lead, payload_hash(payload)))
        if reset:
            self.problems.append(f"{destination}: {len(reset)} records updated with a rep-owned field")
        if repeated := [version for version, n in Counter(versions).items() if n > 1]:
            self.problems.append(f"{destination}: {len(repeated)} payloads delivered more than once to the same lead")
        last = {lead: digest for lead, digest in versions}
        stale = [lead for lead, entry in ledger.items() if lead in last and last[lead] != entry.payload_hash]
        if stale:
            self.problems.append(f"{destination}: {len(stale)} leads whose last delivery is not the one recorded")
        if missing := set(ledger) - set(last):
            self.problems.append(f"{destination}: {len(missing)} recorded deliveries never arrived")
        if unexpected := set(last) - set(ledger):
            self.problems.append(f"{destination}: {len(unexpected)} leads got deliveries the router did not record")
        return len(set(versions))


ROUTINE_SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("intake (POST /leads)", ("leads posted", "accepted by intake", "rejected by intake")),
    (
        "sender -> Clay routine runs",
        ("duplicates skipped before Clay", "routine runs started", "leads sent in runs", "Clay 429s to the pipeline"),
    ),
    (
        "Clay -> run webhook and poller",
        (
            "run webhooks delivered",
            "repeated webhooks dropped",
            "forged webhooks refused",
            "runs whose webhook never came",
            "runs that never finished",
            "items completed",
            "items failed",
            "leads accepted for routing",
        ),
    ),
    ("router", ("routed", "skipped (no destination)")),
    ("dead letters", ("dead-lettered (LeadDLQ)", "dead-lettered (RoutingDLQ)")),
)


def accepted_for_routing(stack: LocalStack) -> dict[str, set[str]]:
    """lead_key -> the callback ids of the routing messages the router was given for it."""
    accepted: dict[str, set[str]] = {}
    for poller in stack.pollers:
        if poller.source.queue_id != "RoutingQueue":
            continue
        for body in list(poller.bodies.values()):
            try:
                message = json.loads(body)
            except ValueError:
                continue
            if isinstance(message, dict) and "lead_key" in message:
                accepted.setdefault(str(message["lead_key"]), set()).add(str(message.get("callback_id")))
    return accepted


class RoutineReconciliation(Reconciliation):
    def __init__(self, stack: LocalStack) -> None:
        super().__init__(stack)
        if stack.routine is None:
            raise ValueError("the stack is not on the routine path")
        self.api = stack.routine.api

    def summary(self) -> Summary:
        stack, api = self.stack, self.api
        item_ids = api.item_ids()
        finished = api.finished_items()
        completed = {lead for lead, status in finished.items() if status == "complete"}
        failed = set(finished) - completed
        stuck = set(api.stuck_item_ids())
        lead_dlq = stack.dead_letters("LeadDLQ")
        routing_dlq = stack.dead_letters("RoutingDLQ")
        lead_dlq_ids = {lead_id_of(m["body"]) for m in lead_dlq}
        routing_dlq_ids = {lead_id_of(m["body"], "lead_key") for m in routing_dlq}
        accepted = accepted_for_routing(stack)
        table = stack.leads_table()
        statuses = Counter(str(item.get("routing_status")) for item in table.values())

        self._check_intake()
        self._check_clay(item_ids, lead_dlq_ids)
        self._check_items(completed, failed | stuck, accepted, lead_dlq_ids)
        self._check_webhooks()
        self._check_routing(list(accepted), table, routing_dlq_ids)
        self._check_destinations(table)
        for queue_id in SOURCE_QUEUES:
            if any((counts := stack.queue_counts(queue_id)).values()):
                self.problems.append(f"{queue_id} is not empty: {counts}")

        deliveries = api.deliveries
        never_sent = lead_dlq_ids - set(item_ids)
        counts = {
            "leads posted": len(stack.posted),
            "accepted by intake": len(stack.accepted_ids),
            "rejected by intake": stack.rejected_rows,
            "duplicates skipped before Clay": len(stack.accepted_ids) - len(set(item_ids)) - len(never_sent),
            "routine runs started": len(api.runs()),
            "leads sent in runs": len(item_ids),
            "Clay 429s to the pipeline": sum(n for (_, status), n in api.responses.items() if status == 429),
            "run webhooks delivered": sum(1 for d in deliveries if d.kind == "signed"),
            "repeated webhooks dropped": sum(1 for d in deliveries if d.kind == "replay" and _duplicate(d.answer)),
            "forged webhooks refused": sum(1 for d in deliveries if d.forged and d.status == 401),
            "runs whose webhook never came": len(api.lost_runs),
            "runs that never finished": sum(1 for run in api.runs() if run.stuck),
            "items completed": len(completed),
            "items failed": len(failed),
            "leads accepted for routing": len(accepted),
            "routed": statuses["routed"],
            "skipped (no destination)": statuses["skipped"],
            "dead-lettered (LeadDLQ)": len(lead_dlq),
            "dead-lettered (RoutingDLQ)": len(routing_dlq),
        }
        routed_to = {**stack.sinks.counts(), "leads_table": len(table)}
        return Summary(counts, routed_to, time.monotonic() - stack.started_at, self.problems, sections=ROUTINE_SECTIONS)

    def _check_items(
        self, completed: set[str], not_completed: set[str], accepted: dict[str, set[str]], lead_dlq_ids: set[str]
    ) -> None:
        if twice := sorted(lead for lead, callbacks in accepted.items() if len(callbacks) > 1):
            self.problems.append(f"accepted for routing more than once: {twice}")
        # A run given up (its time passed) has its leads in the DLQ even if Clay completed it later.
        if missing := sorted(completed - set(accepted) - lead_dlq_ids):
            self.problems.append(f"completed items neither accepted for routing nor in the lead DLQ: {missing}")
        if not_dead := sorted(not_completed - lead_dlq_ids):
            self.problems.append(f"failed or unfinished items not in the lead DLQ: {not_dead}")
        if wrongly := sorted(not_completed & set(accepted)):
            self.problems.append(f"items that did not complete were routed: {wrongly}")

    def _check_webhooks(self) -> None:
        for delivery in self.api.deliveries:
            if delivery.forged and delivery.status != 401:
                self.problems.append(f"a {delivery.kind} run webhook was answered {delivery.status}, not 401")
            if delivery.kind == "replay" and not (delivery.status == 200 and _duplicate(delivery.answer)):
                self.problems.append(f"a repeated run webhook was not answered as a duplicate: {delivery.status}")
            if delivery.kind == "signed" and delivery.status != 200:
                self.problems.append(f"a signed run webhook was answered {delivery.status}")


def _duplicate(answer: dict[str, Any] | None) -> bool:
    return bool((answer or {}).get("duplicate"))


def reconcile(stack: LocalStack) -> Summary:
    """The counts and checks of the stack's enrichment path (the table's, or the routine's)."""
    if stack.routine is not None:
        return RoutineReconciliation(stack).summary()
    return Reconciliation(stack).summary()
