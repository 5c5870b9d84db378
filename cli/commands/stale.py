"""`clay-pipeline stale`: leads sent to Clay with no callback since, the sweeper's lookup on demand.

Read-only: it marks nothing and moves no checkpoint (the hourly StaleSweeperFunction does that).
The window is sent between --since ago and --hours ago; it reads the batch records of that
window through the SentByHour index and the window's leads, and says how many it read.

--export prints only the stale leads' ids, for recovering them in Clay without a second row: `filter`
as the values of a table filter on the lead_id column, `condition` as the HTTP API column's run
condition for exactly those rows, in place of its usual one while they run (README, "Leads that
never came back"). The count goes to stderr, so
the output can be piped to the clipboard as it is.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from clay_pipeline.adapters.batch_records import SENT_RECORD_DAYS, SentBatches, iso
from clay_pipeline.adapters.leads_table import LeadsTable
from clay_pipeline.core.stale_leads import clay_filter_value, clay_run_condition
from clay_pipeline.services.sweeper import HOUR, Lookup, StaleLeads
from cli.commands.common import age, print_json, usage_error, with_target
from cli.operations.target import Target


def default_hours() -> float:
    return float(os.environ.get("STALE_AFTER_HOURS") or 24)


def stale_command(args: argparse.Namespace) -> int:
    if problem := window_problem(default_hours() if args.hours is None else args.hours, args.since, args.limit):
        return usage_error(problem)
    return with_target(args, ("state_table", "leads_table"), lambda target: _run(args, target))


def window_problem(hours: float, since: float, limit: int) -> str:
    """Why the window cannot be looked up (it lies beyond what is kept), or ''. A window --since makes empty
    (--since shorter than --hours) is looked up as it is: nothing is stale in it."""
    kept_hours = SENT_RECORD_DAYS * 24
    if since > SENT_RECORD_DAYS * 86_400:
        return f"--since reaches past the batch records' lifetime ({SENT_RECORD_DAYS} days)"
    if not 0 <= hours <= kept_hours:
        return f"--hours {hours:g} is beyond what is kept: between 0 and {kept_hours} ({SENT_RECORD_DAYS} days)"
    if limit < 0:
        return "--limit must be 0 or more"
    return ""


def _run(args: argparse.Namespace, target: Target) -> int:
    now = time.time()
    hours = default_hours() if args.hours is None else args.hours
    start, end = int(now - args.since), int(now - hours * HOUR)
    lookup = StaleLeads(SentBatches(target.state_table), LeadsTable(target.leads_table)).find(start, end)
    if args.export:
        return _export(args.export, lookup, f"sent to Clay between {age(now - start)} and {age(now - end)} ago")
    if args.json:
        print_json(
            {
                "sent_after": iso(start),
                "sent_before": iso(end),
                "batch_records_read": lookup.batches,
                "leads_checked": lookup.leads,
                "stale": [lead.to_dict() for lead in lookup.stale],
            }
        )
        return 0
    print(
        f"{len(lookup.stale)} of {lookup.leads} lead(s) sent to Clay between {age(now - start)} and "
        f"{age(now - end)} ago have no callback since ({lookup.batches} batch records read, {target.where})"
    )
    for lead in lookup.stale[: args.limit]:
        item = lead.item or {}
        status = "re-queued" if lead.requeued else ("marked stale" if lead.already_marked else "")
        earlier = f", {item.get('callbacks')} earlier callback(s)" if item.get("callbacks") else ""
        print(
            f"  {lead.sent.lead_id:28} sent {age(now - lead.sent.sent_at):>7} ago to webhook "
            f"#{lead.sent.webhook_index}{earlier}  {status}".rstrip()
        )
    if len(lookup.stale) > args.limit:
        print(f"  ... and {len(lookup.stale) - args.limit} more (--limit, or --json for all)")
    return 0


def _export(form: str, lookup: Lookup, window: str) -> int:
    """Every stale lead's id on stdout in the form asked for; what it is, on stderr."""
    lead_ids = [lead.sent.lead_id for lead in lookup.stale]
    print(f"{len(lead_ids)} stale lead(s) {window}", file=sys.stderr)
    if not lead_ids:
        return 0
    if form == "filter":
        print(clay_filter_value(lead_ids))
        if any("," in lead_id for lead_id in lead_ids):
            print("warning: some lead_ids hold a comma; use --export condition for those", file=sys.stderr)
    else:  # alone: a row the column's usual condition skipped (no score) is called back too, and scored here
        print(clay_run_condition(lead_ids))
    return 0
