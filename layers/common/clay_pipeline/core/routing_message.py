"""A RoutingQueue message read into a lead ready to route, and which messages of one batch are routed.

A message is {"callback_id", "lead_key", "lead": {...EnrichedLead...}, "received_at"} (built by
core/callback_acceptance.py routing_message: the callback queues it, the stale-lead sweeper re-queues it).
Reading it validates the lead and fills in icp_score and tier when Clay sent none (scoring.py); a message
that can never be routed ends as DeadLetter (core/outcomes.py) with a reason an operator filters on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from clay_pipeline.core.leads import EnrichedLead, describe_problems
from clay_pipeline.core.outcomes import DeadLetter
from clay_pipeline.core.policies import newer
from clay_pipeline.core.scoring import icp_score, tier_for


@dataclass(frozen=True)
class RoutingMessage:
    callback_id: str
    lead_key: str
    received_at: str
    lead: dict[str, Any]  # the validated lead with icp_score and tier filled in
    sent: frozenset[str]  # the columns Clay sent with a value, before the score and tier were filled in

    @property
    def score(self) -> float | None:
        score = self.lead.get("icp_score")
        return float(score) if isinstance(score, (int, float)) else None


def parse_message(body: str, now: datetime) -> RoutingMessage:
    """The message's lead, scored; DeadLetter when it can never be routed. `now` stands in for a missing
    received_at."""
    try:
        document = json.loads(body)
    except ValueError as error:
        raise DeadLetter("malformed_json", f"body is not valid JSON: {getattr(error, 'msg', error)}") from None
    if not isinstance(document, dict) or not isinstance(document.get("lead"), dict):
        raise DeadLetter("not_routing_message", "body must be an object with a 'lead' object")
    try:
        lead = EnrichedLead.read(document["lead"])
    except ValidationError as error:
        raise DeadLetter("invalid_lead", describe_problems(error)) from None
    fields = lead.to_message()
    sent = frozenset(fields)
    if lead.icp_score is None:
        fields["icp_score"] = icp_score(
            lead.employee_count, lead.industry, lead.job_title, lead.email, lead.phone
        ).score
    fields.setdefault("tier", tier_for(fields["icp_score"]))
    lead_key = str(document.get("lead_key") or lead.lead_id)
    return RoutingMessage(
        callback_id=str(document.get("callback_id") or lead_key),
        lead_key=lead_key,
        received_at=str(document.get("received_at") or now.isoformat()),
        lead=fields,
        sent=sent,
    )


@dataclass(frozen=True)
class BatchSelection:
    """Which messages of a batch are routed: the newest of each lead; the older ones are superseded."""

    newest: dict[str, RoutingMessage]  # by record id, in batch order
    superseded: dict[str, RoutingMessage]  # by record id
    failed: dict[str, Exception]  # by record id: comparing it raised (its values broke something)


def newest_per_lead(messages: Iterable[tuple[str, RoutingMessage]]) -> BatchSelection:
    """Per-column callbacks and re-runs of one row arrive together: only the lead's newest version is routed
    (by received_at; of two equal ones, the later in the batch)."""
    newest: dict[str, tuple[str, RoutingMessage]] = {}  # lead key -> (record id, message)
    superseded: dict[str, RoutingMessage] = {}
    failed: dict[str, Exception] = {}
    for record_id, message in messages:
        previous = newest.get(message.lead_key)
        try:
            older = previous is not None and newer(previous[1].received_at, message.received_at)
        except Exception as error:  # one lead's values must not fail the batch: the service isolates it
            failed[record_id] = error
            continue
        if older:
            superseded[record_id] = message
            continue
        if previous is not None:
            superseded[previous[0]] = previous[1]
        newest[message.lead_key] = (record_id, message)
    return BatchSelection({record_id: message for record_id, message in newest.values()}, superseded, failed)
