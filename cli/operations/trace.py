"""Everything the tables and queues know about one lead, in order: `clay-pipeline trace`.

A lead is found by its id, which is derived from the normalised email (or domain and names),
so an email or a lead_id costs a few GetItems: the dedupe mark (intake source and time, the
sender's batch), the batch record (webhook index, send time, receives, POSTs) or on the routine
path the run (`run#`, its `run-done#` ending; the mark names it, else the `run-leads#<batch>`
list, else the lead's dead letter when the collector released the mark), the leads table
item (callbacks, latest body hash, score, tier, routing outcome, delivery ledger, stale mark),
the pause switch, and both DLQs (read and released; --no-dlq skips them). A domain is looked up
as the domain-only lead id and then by scanning the leads table for enrichments of that domain
(the table has no index on domain: a scan reads every item, so it says how many it read).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from clay_pipeline.adapters.aws import client
from clay_pipeline.adapters.batch_records import SentBatches, SentLead
from clay_pipeline.adapters.dead_letter_queues import QUEUES, DeadLetterMessage, DeadLetterQueue
from clay_pipeline.adapters.dynamodb import from_item
from clay_pipeline.adapters.leads_table import LeadsTable
from clay_pipeline.adapters.ledger import SENDING_PREFIX, UNKNOWN_PREFIX, markers
from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.core import state_keys
from clay_pipeline.core.callback_acceptance import PENDING_PREFIX, callback_version
from clay_pipeline.core.leads import Lead, derive_lead_id, normalise_domain
from clay_pipeline.core.stale_leads import CLAIMED_STATUS
from clay_pipeline.services.pause import DestinationSwitch
from clay_pipeline.services.routines import RunStore
from cli.operations.target import Target

# A run's mark (routines.RunStore), as a sentence: '' while nothing has decided it.
RUN_STATES = {
    "": "not collected yet",
    "collecting": "being collected",
    "collected": "collected",
    "giving_up": "being given up",
    "gave_up": "given up (its leads went to LeadDLQ)",
    "abandoned": "abandoned (its polls could not be queued; its leads were sent again)",
}
# Where the lead's send on the routine path is confirmed (routine_sender.py)
CONFIRMATIONS = {
    "mark": "the sender set the dedupe mark sent when it recorded the run",
    "run_list": "the sender could not set the dedupe mark sent: its list {run_leads} names the run",
    # run_collector.py: a failed (or missing) item is dead-lettered with its run, and its dedupe mark released
    "dead_letter": "its result went to LeadDLQ with the run's id (the dedupe mark was released: a replay sends it "
    "in a new run)",
}
# The stored version's callback claim, no routing outcome yet (services/sweeper.py, "Unqueued claims").
UNROUTED_CLAIM = (
    "accepted, not routed yet: queued for the router, or its callback died before queueing it "
    "(then the hourly stale sweep queues it once the claim is CALLBACK_UNQUEUED_AFTER_SECONDS old)"
)


def kind_of(who: str) -> str:
    """email when it has an @, domain when it parses as one, else a lead_id."""
    if "@" in who:
        return "email"
    if not who.startswith("ld_"):
        with contextlib.suppress(ValueError):
            normalise_domain(who)
            return "domain"
    return "lead_id"


def when(value: Any) -> str:
    """An epoch number or an ISO string as an ISO time in UTC ('' when absent)."""
    if value in (None, ""):
        return ""
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC).isoformat()
    return datetime.fromisoformat(str(value)).astimezone(UTC).isoformat()


@dataclass
class LeadTrace:
    lead_id: str
    mark: dict[str, Any] | None = None  # the sender's dedupe mark
    sent: SentLead | None = None  # the lead's entry in its batch record
    run: dict[str, Any] = field(default_factory=dict)  # the routine path: the lead's run (RoutineRun.to_dict)
    item: dict[str, Any] | None = None  # the leads table item
    paused: dict[str, dict[str, Any]] = field(default_factory=dict)  # paused destinations
    dead_letters: list[DeadLetterMessage] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool(self.mark or self.item or self.dead_letters)

    def to_dict(self) -> dict[str, Any]:
        mark, item = self.mark or {}, self.item or {}
        enrichment = item.get("enrichment") or {}
        status = mark.get("status")
        if status == "sending" and (self.sent or self.run):  # its batch record or run list confirms it (Deduper)
            status = "sent"
        sent_at = mark.get("sent_at") or (self.sent.sent_at if self.sent else None) or self.run.get("started_at")
        callback_id = str(item.get("callback_id") or "")
        return {
            "lead_id": self.lead_id,
            "found": self.found,
            "intake": {"source": mark.get("source"), "submitted_at": when(mark.get("submitted_at"))}
            if mark.get("source") or mark.get("submitted_at")
            else None,
            "dedupe": {
                "status": status,
                "claimed_at": when(mark.get("created_at")),
                "sent_at": when(sent_at),
                "expires_at": when(mark.get("expires_at")),
                "batch": mark.get("batch"),
            }
            if mark
            else None,
            "clay": self.sent.to_dict() if self.sent else None,
            "routine_run": self.run or None,
            "callbacks": {
                "count": int(item.get("callbacks") or 0),
                "latest_received_at": when(item.get("received_at")),
                "latest_body_hash": callback_id.rsplit("#", 1)[-1] if "#" in callback_id else callback_id,
                "icp_score": item.get("icp_score", enrichment.get("icp_score")),
                "tier": item.get("tier", enrichment.get("tier")),
                "email": enrichment.get("email"),
                "domain": enrichment.get("domain"),
            }
            if item.get("received_at")
            else None,
            "stale": {
                "stale_at": when(item.get("stale_at")),
                "clay_sent_at": when(item.get("clay_sent_at")),
                "requeued_at": when(item.get("requeued_at")),
            }
            if item.get("stale_at")
            else None,
            "routing": {
                "status": item.get("routing_status"),
                "routed_at": when(item.get("routed_at")),
                "routes": item.get("routes") or [],
                "destinations": item.get("destinations") or {},
                "skipped_reason": item.get("skipped_reason"),
                "deliveries": {
                    name: {"at": when(entry.get("at")), "hash": entry.get("hash"), "score": entry.get("score")}
                    for name, entry in sorted((item.get("deliveries") or {}).items())
                    if isinstance(entry, dict)
                },
                # sent, no answer (or the invocation ended before recording): `clay-pipeline settle` decides
                "unknown": {
                    name: {"at": when(entry.get("at")), "reason": entry.get("reason"), "hash": entry.get("hash")}
                    for name, entry in sorted(_unknown(item).items())
                },
                "lease_until": when(item.get("lease_until")),
                # the stored version's callback claim: the router has not written for it yet
                "claimed_at": when(item.get(PENDING_PREFIX + callback_version(callback_id))) if callback_id else "",
            }
            if item.get("routing_status") not in (None, "stale") or item.get("deliveries")
            else None,
            "paused_destinations": self.paused,
            "dead_letters": [message.decoded() for message in self.dead_letters],
        }

    def timeline(self) -> list[tuple[str, str, str]]:
        """(ISO time, stage, what happened), oldest first; facts without a time come last."""
        trace = self.to_dict()
        events: list[tuple[str, str, str]] = []
        if intake := trace["intake"]:
            events.append((intake["submitted_at"], "intake", f"submitted by {intake['source'] or 'an unknown source'}"))
        if dedupe := trace["dedupe"]:
            until = {
                "sent": f", not sent again until {_short(dedupe['expires_at'])}",
                "unknown": f": Clay's answer was lost, the lead is held until {_short(dedupe['expires_at'])}"
                " (find it in Clay and mark it sent, or let it go again then)",
            }.get(str(dedupe["status"]), "")
            events.append((dedupe["claimed_at"], "dedupe mark", f"{dedupe['status']}{until}"))
        if clay := trace["clay"]:
            posts = f"{clay['posts']} POST" + ("s" if clay["posts"] != 1 else "")
            text = f"webhook #{clay['webhook_index']}, attempt {clay['receives']} (SQS receive), {posts}"
            events.append((clay["sent_at"], "sent to Clay", f"{text}, batch {clay['batch'][:8]}"))
        elif run := trace["routine_run"]:
            events.append((run["started_at"] or (dedupe or {}).get("sent_at", ""), "sent to Clay", _run_story(run)))
        elif dedupe and dedupe["sent_at"]:
            events.append((dedupe["sent_at"], "sent to Clay", "(no batch record: sent before it was kept)"))
        if callbacks := trace["callbacks"]:
            text = (
                f"{callbacks['count']} received; latest body {str(callbacks['latest_body_hash'])[:16]}, "
                f"score {callbacks['icp_score']}, tier {callbacks['tier']}"
            )
            events.append((callbacks["latest_received_at"], "callback", text))
        if stale := trace["stale"]:
            requeued = f"; re-queued to Clay at {_short(stale['requeued_at'])}" if stale["requeued_at"] else ""
            events.append((stale["stale_at"], "stale", f"no callback since {_short(stale['clay_sent_at'])}{requeued}"))
        if routing := trace["routing"]:
            for name, entry in routing["deliveries"].items():
                events.append((entry["at"], "delivered", f"{name} (score {entry['score']}, payload {entry['hash']})"))
            statuses = ", ".join(f"{name} {status}" for name, status in sorted(routing["destinations"].items()))
            text = f"{routing['status']}: {statuses}" if statuses else str(routing["status"])
            if routing["skipped_reason"]:
                text += f" ({routing['skipped_reason']})"
            if routing["claimed_at"] and routing["status"] == CLAIMED_STATUS:
                events.append((routing["claimed_at"], "routing", UNROUTED_CLAIM))
            else:
                events.append((routing["routed_at"], "outcome", text))
            for name, entry in routing["unknown"].items():
                text = (
                    f"{name}: sent, no answer ({entry['reason']}); not sent again until settled: "
                    f"clay-pipeline settle {self.lead_id} {name} --delivered|--resend"
                )
                events.append((entry["at"], "unknown", text))
            if routing["lease_until"]:
                events.append(("", "routing", f"being routed now (lease until {_short(routing['lease_until'])})"))
        for name, entry in trace["paused_destinations"].items():
            reason = f": {entry['reason']}" if entry.get("reason") else ""
            until = f" until {_short(when(entry['until']))}" if entry.get("until") else ""
            events.append((when(entry.get("at")), "paused", f"{name} is paused{until}, its deliveries wait{reason}"))
        for message in trace["dead_letters"]:
            text = f"{message['reason']} {message['detail']}".strip()
            events.append((message["dead_lettered_at"], f"in {message['queue']}", f"{text} ({message['message_id']})"))
        # to the second, then in the pipeline's order (the times come at different precisions)
        timed = sorted((event for event in events if event[0]), key=lambda event: event[0][:19])
        return timed + [event for event in events if not event[0]]

    def render(self, query: str) -> str:
        header = f"lead {self.lead_id}" + (f" ({query})" if query != self.lead_id else "")
        if not self.found:
            return f"{header}: nothing recorded (not sent, no callback, not dead-lettered)"
        lines = [header]
        for at, stage, text in self.timeline():
            lines.append(f"  {_short(at):20} {stage:13} {text}")
        if not self.dead_letters:
            lines.append(f"  {'':20} {'dead letters':13} none")
        return "\n".join(lines)


def _unknown(item: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Deliveries whose outcome is unknown: marked so, or an intent whose lease lapsed uncompleted."""
    found = {name: entry for name, entry in markers(item, UNKNOWN_PREFIX).items() if isinstance(entry, dict)}
    lease_until = item.get("lease_until")
    if lease_until is None or int(lease_until) < datetime.now(UTC).timestamp():
        for name, entry in markers(item, SENDING_PREFIX).items():
            if isinstance(entry, dict) and name not in (item.get("deliveries") or {}):
                found.setdefault(name, {**entry, "reason": "ended_before_recording"})
    return found


def _run_story(run: dict[str, Any]) -> str:
    """The routine run a lead went in: when Clay accepted it, how it stands, what confirms the lead's send."""
    items = f" ({run['items']} items)" if run.get("items") is not None else ""
    started = f", started {_short(run['started_at'])}" if run["started_at"] else ", its record has expired"
    state = RUN_STATES.get(run["ending"], run["ending"])
    confirmation = CONFIRMATIONS[run["confirmed_by"]].format(run_leads=state_keys.run_leads(run["batch"]))
    return f"routine run {run['routine_run_id']}{items}{started}, {state}; {confirmation}"


def _short(iso: str) -> str:
    """2026-12-02T03:40:01.123+00:00 -> 2026-12-02 03:40:01Z"""
    return f"{iso[:10]} {iso[11:19]}Z" if iso else ""


@dataclass
class Tracer:
    target: Target
    read_dead_letters: bool = True
    scanned: int = 0  # leads table items a domain lookup read
    _dead_letters: list[DeadLetterMessage] | None = None

    def lead_ids(self, who: str, kind: str) -> list[str]:
        if kind == "lead_id":
            return [who]
        if kind == "email":
            return [str(Lead.model_validate({"email": who}).lead_id)]
        domain = normalise_domain(who)
        ids = [str(derive_lead_id(None, domain, None, None, None))]
        return list(dict.fromkeys([*ids, *self._scan_domain(domain)]))

    def trace(self, lead_id: str) -> LeadTrace:
        store = StateStore(self.target.state_table)
        trace = LeadTrace(lead_id, mark=store.get(state_keys.dedupe(lead_id)))
        batch = (trace.mark or {}).get("batch")
        if batch:
            record = SentBatches(self.target.state_table).get(str(batch))
            entry = ((record or {}).get("leads") or {}).get(lead_id)
            trace.sent = (
                SentLead.from_entry(lead_id, str(batch), entry, int(record["sent_at"])) if record and entry else None
            )
        trace.run = self._routine_run(store, lead_id, trace.mark or {}) if not trace.sent else {}
        if self.target.leads_table:
            trace.item = LeadsTable(self.target.leads_table).get(lead_id)
        item = trace.item or {}
        routes = set(item.get("routes") or []) | set(item.get("destinations") or {})
        paused = {name: state for name, state in DestinationSwitch(store).states().items() if state["paused"]}
        # the lead's own destinations when it was routed; every paused one otherwise
        trace.paused = {name: state for name, state in paused.items() if name in routes or not routes}
        trace.dead_letters = [message for message in self._all_dead_letters() if message.lead_id == lead_id]
        if not trace.run and not trace.sent:  # a routine lead the collector dead-lettered: its mark is gone
            trace.run = self._dead_lettered_run(store, trace.dead_letters)
        return trace

    @staticmethod
    def _routine_run(store: StateStore, lead_id: str, mark: dict[str, Any]) -> dict[str, Any]:
        """The routine run that has the lead: named on its mark when the sender set it sent, else by the
        sender invocation's `run-leads#<batch>` list (written when it could not set the mark)."""
        runs = RunStore(store)
        run_id, confirmed_by = str(mark.get("routine_run_id") or ""), "mark"
        if not run_id and mark.get("batch"):
            run_id, confirmed_by = runs.listed_run(str(mark["batch"]), lead_id) or "", "run_list"
        if not run_id:
            return {}
        summary = runs.summary(run_id)
        return {"routine_run_id": run_id, **summary, "confirmed_by": confirmed_by, "batch": mark.get("batch")}

    @staticmethod
    def _dead_lettered_run(store: StateStore, dead_letters: list[DeadLetterMessage]) -> dict[str, Any]:
        """The run named on the lead's latest dead letter from the run collector, {} when none names one."""
        named = [message for message in dead_letters if message.attributes.get("routine_run_id")]
        if not named:
            return {}
        run_id = max(named, key=lambda message: message.sent_at).attributes["routine_run_id"]
        summary = RunStore(store).summary(run_id)
        return {"routine_run_id": run_id, **summary, "confirmed_by": "dead_letter", "batch": None}

    def _all_dead_letters(self) -> list[DeadLetterMessage]:
        if not self.read_dead_letters:
            return []
        if self._dead_letters is None:
            self._dead_letters = []
            for pair in QUEUES.values():
                url = getattr(self.target, f"{pair.name}_dlq_url")
                if not url or not pair.about_leads:
                    continue
                queue = DeadLetterQueue(pair, url, getattr(self.target, f"{pair.name}_queue_url"))
                self._dead_letters += queue.peek()
        return self._dead_letters

    def _scan_domain(self, domain: str) -> list[str]:
        if not self.target.leads_table:
            return []
        found = []
        pages = (
            client("dynamodb")
            .get_paginator("scan")
            .paginate(
                TableName=self.target.leads_table,
                FilterExpression="enrichment.#domain = :domain",
                ExpressionAttributeNames={"#domain": "domain"},
                ExpressionAttributeValues={":domain": {"S": domain}},
                ProjectionExpression="lead_key",
            )
        )
        for page in pages:
            self.scanned += int(page.get("ScannedCount", 0))
            found += [str(from_item(item)["lead_key"]) for item in page.get("Items", [])]
        return found
