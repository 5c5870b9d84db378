"""`clay-pipeline trace <email|lead_id|domain>`: what happened to a lead, from intake to its destinations."""

from __future__ import annotations

import argparse

from pydantic import ValidationError

from cli.commands.common import print_json, usage_error, with_target
from cli.operations.target import Target
from cli.operations.trace import Tracer, kind_of


def trace_command(args: argparse.Namespace) -> int:
    return with_target(args, ("state_table", "leads_table"), lambda target: _run(args, target))


def _run(args: argparse.Namespace, target: Target) -> int:
    who = args.who.strip()
    kind = args.kind or kind_of(who)
    tracer = Tracer(target, read_dead_letters=not args.no_dlq)
    try:
        lead_ids = tracer.lead_ids(who, kind)
    except (ValidationError, ValueError) as error:
        return usage_error(f"{who!r} is not a valid {kind}: {str(error).splitlines()[0]}")
    traces = [tracer.trace(lead_id) for lead_id in lead_ids]
    found = [trace for trace in traces if trace.found] or traces[:1]
    if args.json:
        leads = [trace.to_dict() for trace in found]
        print_json(
            {"query": who, "kind": kind, "pipeline": target.where, "leads_scanned": tracer.scanned, "leads": leads}
        )
    else:
        if tracer.scanned:
            print(f"(domain lookup: scanned {tracer.scanned} leads table items)")
        print("\n\n".join(trace.render(who) for trace in found))
    return 0 if any(trace.found for trace in found) else 1
