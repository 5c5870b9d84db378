"""The local stack on the routine path (ClayEnrichmentPath=routine): Clay's Public API simulator and the checks.

`LocalStack(StackOptions(enrichment_path="routine"))` starts a ClayApiSimulator (local/clay_api_sim.py)
next to the table simulator, registers the run webhook on the gateway's /clay/routine-webhook (as
`clay webhooks create` would, with the local signing secret of LOCAL_SECRETS) and deploys the template
with ClayEnrichmentPath=routine and the simulator's URL, routine and webhook id.

RoutineReconciliation checks, from what the simulator, the RoutingQueue poller and the sinks recorded
(not from the pipeline's metrics or tables): no lead in two runs; every lead the intake accepted is in
a run or the lead DLQ; every completed item was accepted for routing exactly once (one callback id
per lead among the routing messages, whether the webhook, the poller or both read the run) and
routed; every failed item, and every lead of a run that never finished, is in the lead DLQ; every
forged webhook was refused and every repeated one answered as a duplicate.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from cli.operations.dead_letters import lead_id_of
from local.clay_api_sim import ClayApiSimulator
from local.stack import (
    LOCAL_SECRETS,
    SOURCE_QUEUES,
    LocalStack,
    Reconciliation,
    Summary,
)

RUN_WEBHOOK_PATH = "/clay/routine-webhook"
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


@dataclass
class RoutineClay:
    api: ClayApiSimulator
    webhook_id: str

    @classmethod
    def start(cls, gateway_url: str, settings: dict[str, Any]) -> RoutineClay:
        api = ClayApiSimulator(api_key=LOCAL_SECRETS["CLAY_API_KEY"], **settings)
        api.start()
        secret = LOCAL_SECRETS["CLAY_WEBHOOK_SIGNING_SECRETS"]
        webhook_id, _ = api.create_webhook(gateway_url + RUN_WEBHOOK_PATH, signing_secret=secret)
        return cls(api, webhook_id)

    def parameters(self) -> dict[str, str]:
        return {
            "ClayEnrichmentPath": "routine",
            "ClayApiBaseUrl": self.api.base_url,
            "ClayRoutineId": self.api.routine_id,
            "ClayRunWebhookId": self.webhook_id,
        }


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
