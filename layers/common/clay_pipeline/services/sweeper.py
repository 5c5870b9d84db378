"""Stale leads: sent to Clay, and no callback after STALE_AFTER_HOURS; and called-back leads never queued.

How the sweeper finds them without reading the whole table (DynamoDB bills a write unit at five
times a read unit, and every write per lead counts):

- What is used: the sender writes one `sent#<batch id>` record per SQS batch it sent (the leads'
  ids, each with its webhook index, send time, receives and POSTs as a short list: about 1 KB
  for the template's batch of twenty, one write unit, so ~0.05 WRU per lead), when the batch ends.
  Only these records carry `sent_bucket` (the UTC hour), so the state table's SentByHour index is
  sparse: one more write unit per batch, ~0.05 WRU per lead. A sweep reads its window's batch
  records with one Query per UTC hour it spans (half a read unit per 4 KB returned) and reads the
  window's leads from the leads table with BatchGetItem (half a unit per lead): what a run reads
  grows with the leads sent in its window, never with the table. bench/cost_model.py measures it.
- Rejected: an index over the leads' own items or dedupe marks (one index write per lead, ~1 WRU
  per lead, ten times the above); a Scan (reads every item of the table every run); one item per
  hour appended to (every append is billed at the whole item's size, up to 400 KB); keys from an
  allocated sequence per hour (a counter write per batch on top of the record, and empty slots to
  read).
- The sweep's window is (checkpoint, now - STALE_AFTER_HOURS]: each run starts where the last one
  ended (`sweep#stale` in the state table), so a failed or missed run is caught up by the next and
  no window is read twice. A first run looks back one schedule interval; batch records expire
  after SENT_RECORD_DAYS, which bounds how far a sweep ever looks back.

Crash windows: a sender that dies after sending but before its batch ends (a Lambda timeout) writes
no batch record, so those leads are not watched (they reached Clay; only the stale check misses
them). The sweeper re-reads its whole window if it fails before the checkpoint write; marking
stale is conditional and idempotent. Re-queueing (STALE_REQUEUE, off by default: each re-send
costs Clay actions and creates a second row) is at most once per lead: `requeued_at` is written
before the dedupe mark is removed and the lead re-queued, so a crash in between loses the
re-queue, never doubles it. It needs the lead's body, which the sender keeps in the batch record
(compressed) only while STALE_REQUEUE is on, at a few more write units per batch.

Unqueued claims: of the window's leads that were called back, an item still holding its stored version's
claim (`pending_<version>`) CALLBACK_UNQUEUED_AFTER_SECONDS after it was written belongs to a callback that
died between its claim and queueing (Clay does not re-send a 5xx). The sweeper queues the routing message the
callback would have (core/stale_leads.py decides). Only items whose projected attributes say so (routing status
still the claim's, received long enough ago) are read whole, one GetItem each. The copy is not remembered:
each send window is read once (the checkpoint), and a second copy (a sweep re-reading its window after a
failure, a lead re-sent and swept again, a claim whose router is merely slow) is routed once by the router's
ledger, as the copy an identical callback queues when it meets a claim (services/callback.py). A mark written
before queueing would reopen the window it closes (marked, then dead before queueing: never queued again).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clay_pipeline.adapters.batch_records import SENT_RECORD_TTL_SECONDS, SentBatches, SentLead, iso, unpack_bodies
from clay_pipeline.adapters.leads_table import LeadsTable
from clay_pipeline.adapters.queues import Queue
from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.config import SweeperSettings
from clay_pipeline.core import state_keys
from clay_pipeline.core.stale_leads import called_back_since, may_hold_unqueued_claim, sweep_window, unqueued_claim
from clay_pipeline.observability import count, level, logger
from clay_pipeline.services.pause import DestinationSwitch

HOUR = 3600
CHECKPOINT_KEY = state_keys.sweep_checkpoint()
FIRST_WINDOW_SECONDS = HOUR  # the schedule's interval in template.yaml
LEAD_ATTRIBUTES = ("received_at", "routing_status", "clay_sent_at", "requeued_at", "callbacks")


# -- the lookup (the sweeper's, and `clay-pipeline stale`'s) ----------------------------------
@dataclass(frozen=True)
class StaleLead:
    sent: SentLead
    item: dict[str, Any] | None  # the lead's leads-table attributes (LEAD_ATTRIBUTES), None when it has no item

    @property
    def already_marked(self) -> bool:
        item = self.item or {}
        return item.get("routing_status") == "stale" and item.get("clay_sent_at") == iso(self.sent.sent_at)

    @property
    def requeued(self) -> bool:
        return bool((self.item or {}).get("requeued_at"))

    def to_dict(self) -> dict[str, Any]:
        item = self.item or {}
        return {
            **self.sent.to_dict(),
            "earlier_callbacks": int(item.get("callbacks") or 0),
            "marked_stale": self.already_marked,
            "requeued_at": item.get("requeued_at"),
        }


@dataclass(frozen=True)
class Lookup:
    start: int
    end: int
    batches: int  # batch records read
    leads: int  # distinct leads sent in the window
    stale: list[StaleLead]
    # called back, still in the claim's routing status since `unqueued_after_seconds` (of find): maybe never queued
    unqueued_candidates: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StaleLeads:
    batches: SentBatches
    leads: LeadsTable

    def find(self, start: int, end: int, now: float = 0, unqueued_after_seconds: int | None = None) -> Lookup:
        """Leads whose last send in (start, end] has no callback since: one Query per hour, BatchGetItem per 100.

        With `unqueued_after_seconds`, also the leads that may hold a claim their callback never queued
        (may_hold_unqueued_claim: their callback came that long before `now`, or earlier)."""
        sent: dict[str, SentLead] = {}
        batches = 0
        for record in self.batches.between(start, end):
            batches += 1
            batch_id = state_keys.batch_id_of_sent(str(record["pk"]))
            for lead_id, entry in (record.get("leads") or {}).items():
                lead = SentLead.from_entry(lead_id, batch_id, entry, int(record["sent_at"]))
                if lead_id not in sent or lead.sent_at > sent[lead_id].sent_at:  # re-sent: the last send counts
                    sent[lead_id] = lead
        items = self.leads.batch_get(sent, LEAD_ATTRIBUTES)
        stale = [
            StaleLead(lead, items.get(lead_id))
            for lead_id, lead in sent.items()
            if not called_back_since(items.get(lead_id), lead.sent_at)
        ]
        candidates = (
            []
            if unqueued_after_seconds is None
            else sorted(
                lead_id for lead_id, item in items.items() if may_hold_unqueued_claim(item, now, unqueued_after_seconds)
            )
        )
        stale.sort(key=lambda s: (s.sent.sent_at, s.sent.lead_id))
        return Lookup(start, end, batches, len(sent), stale, candidates)


# -- the scheduled sweep --------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepReport:
    start: int
    end: int
    batches: int
    leads_checked: int
    stale: int  # marked stale by this run
    requeued: int
    already_marked: int
    unqueued_routed: int  # called-back leads whose callback never queued them, queued for routing by this run

    def to_dict(self) -> dict[str, Any]:
        return {**vars(self), "start": iso(self.start), "end": iso(self.end)}


class StaleSweeper:
    def __init__(self, settings: SweeperSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.store = StateStore(settings.state_table)
        self.batches = SentBatches(settings.state_table)
        self.leads = LeadsTable(settings.leads_table)
        self.lookup = StaleLeads(self.batches, self.leads)
        self.lead_queue = Queue(settings.lead_queue_url)
        self.routing_queue = Queue(settings.routing_queue_url)
        self.switch = DestinationSwitch(self.store, cache_seconds=0)

    def window(self) -> tuple[int, int]:
        """(checkpoint, now - STALE_AFTER_HOURS], never reaching back past the batch records' lifetime."""
        checkpoint = self.store.get(CHECKPOINT_KEY)
        swept_to = int(checkpoint["swept_to"]) if checkpoint else None
        return sweep_window(
            int(self.clock()),
            self.settings.stale_after_hours * HOUR,
            swept_to,
            FIRST_WINDOW_SECONDS,
            SENT_RECORD_TTL_SECONDS,
        )

    def run(self) -> SweepReport:
        start, end = self.window()
        after = self.settings.callback_unqueued_after_seconds
        lookup = self.lookup.find(start, end, self.clock(), after) if end > start else Lookup(start, end, 0, 0, [])
        now = iso(self.clock())
        marked = requeued = already = 0
        bodies: dict[str, dict[str, str]] = {}  # batch id -> its kept bodies, read once per batch
        for lead in lookup.stale:
            if lead.already_marked:
                already += 1
                continue
            requeue = self.settings.stale_requeue and not lead.requeued
            if not self.leads.mark_stale(lead.sent.lead_id, iso(lead.sent.sent_at), now, requeue):
                continue  # a callback arrived meanwhile
            marked += 1
            if requeue and self._requeue(lead.sent, bodies):
                requeued += 1
        unqueued = sum(self._queue_unqueued(lead_key) for lead_key in lookup.unqueued_candidates)
        if end > start:
            self.store.update(CHECKPOINT_KEY, {"swept_to": end, "swept_at": int(self.clock())})
        report = SweepReport(start, end, lookup.batches, lookup.leads, marked, requeued, already, unqueued)
        count("LeadsStale", marked)  # published even when 0, so the alarm and the dashboard have data
        count("LeadsRequeued", requeued)
        count("LeadsUnqueuedRouted", unqueued)
        for name in self.switch.paused():  # the dashboard shows a pause even while no lead is routed
            level("DestinationPaused", 1, destination=name)
        log = logger.warning if marked or unqueued else logger.info
        log("stale lead sweep", extra=report.to_dict())
        return report

    def _requeue(self, lead: SentLead, bodies: dict[str, dict[str, str]]) -> bool:
        """Remove the dedupe mark (else the sender skips the lead as sent) and queue the kept body once more."""
        if lead.batch_id not in bodies:
            record = self.batches.get(lead.batch_id)
            bodies[lead.batch_id] = unpack_bodies(record["bodies"]) if record else {}
        body = bodies[lead.batch_id].get(lead.lead_id)
        if body is None:
            logger.warning(
                "stale lead not re-queued: its body was not kept (STALE_REQUEUE was off when it was sent)",
                extra={"lead_id": lead.lead_id},
            )
            return False
        self.store.delete(state_keys.dedupe(lead.lead_id))
        self.lead_queue.send_raw(body, attributes={"requeued_by": "stale-sweeper", "original_batch": lead.batch_id})
        logger.info("stale lead re-queued for Clay", extra={"lead_id": lead.lead_id})
        return True

    def _queue_unqueued(self, lead_key: str) -> bool:
        """Queue the routing message of a claim its callback never queued (the whole item read once, consistent).

        Safe if the callback did queue it after all, or the router is only slow: the router's ledger delivers a
        lead once per destination, as for the copy an identical callback queues when it meets a claim.
        """
        message = unqueued_claim(self.leads.get(lead_key), self.clock(), self.settings.callback_unqueued_after_seconds)
        if message is None:
            return False  # routed meanwhile, or a newer version is stored
        self.routing_queue.send(message)
        logger.warning(
            "called-back lead queued for routing: its callback's claim was never queued",
            extra={"lead_id": lead_key, "callback_id": message["callback_id"], "claimed_at": message["received_at"]},
        )
        return True
