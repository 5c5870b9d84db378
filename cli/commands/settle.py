"""`clay-pipeline settle LEAD DESTINATION --delivered|--resend`: an operator's word on an unknown outcome.

A delivery to a "hold" destination whose answer was lost (UNKNOWN_OUTCOME_POLICIES) is never sent
again by itself. Look in the destination (the sequence, the Zap's history) and say:
--delivered: it arrived; recorded as delivered, never sent again;
--resend: it did not; the lead's next routing sends it, and one is queued now (RoutingQueue) from the
lead's stored enrichment, so nothing else has to happen.
"""

from __future__ import annotations

import argparse

from pydantic import ValidationError

from clay_pipeline.adapters.leads_table import LeadsTable
from clay_pipeline.adapters.ledger import Settlements
from clay_pipeline.adapters.queues import Queue
from cli.commands.common import print_json, usage_error, with_target
from cli.operations.target import Target
from cli.operations.trace import Tracer, kind_of


def settle_command(args: argparse.Namespace) -> int:
    needs = ("leads_table", "routing_queue_url") if args.resend else ("leads_table",)
    return with_target(args, needs, lambda target: _run(args, target))


def _run(args: argparse.Namespace, target: Target) -> int:
    who = args.lead.strip()
    kind = kind_of(who)
    if kind == "domain":
        return usage_error("settle takes a lead_id or an email (`clay-pipeline trace DOMAIN` lists its leads)")
    try:
        [lead_id] = Tracer(target, read_dead_letters=False).lead_ids(who, kind)
    except (ValidationError, ValueError) as error:
        return usage_error(f"{who!r} is not a valid {kind}: {str(error).splitlines()[0]}")
    ledger = Settlements(target.leads_table)
    try:
        entry = ledger.settle(lead_id, args.destination, delivered=args.delivered)
    except LookupError as error:
        return usage_error(str(error))
    if args.resend:
        item = LeadsTable(target.leads_table).get(lead_id) or {}
        message = {
            "callback_id": item.get("callback_id") or lead_id,
            "lead_key": lead_id,
            "lead": item.get("enrichment") or {},
            "received_at": item.get("received_at") or "",
        }
        Queue(target.routing_queue_url).send(message)
    if args.json:
        settled = "delivered" if args.delivered else "resend"
        print_json({"lead_id": lead_id, "destination": args.destination, "settled": settled, "entry": entry})
    elif args.delivered:
        print(f"{lead_id} {args.destination}: recorded as delivered; it is never sent again.")
    else:
        print(f"{lead_id} {args.destination}: owed again; a routing message is queued and it goes out once.")
    return 0
