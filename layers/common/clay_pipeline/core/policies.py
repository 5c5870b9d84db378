"""What a callback still owes each destination, given what the lead's ledger remembers.

Clay calls the same row back again whenever a column re-runs or auto-updates, and tables with
one HTTP API column per enrichment call back several times per row: a callback is a version
of a lead, not a new lead. So the ledger is kept per lead (adapters/ledger.LeadLedger, on the lead's
LeadsTable item) and each destination's policy (core/rules.DEFAULT_POLICIES) decides:

- once_per_lead: delivered at most once per lead within DELIVERY_MARK_DAYS, whatever later
  callbacks say;
- on_change: delivered again only when the payload that destination receives changed (a hash
  of the mapped payload, so an identical re-send costs no call and a real change updates it).

A delivery whose outcome is unknown (it went out and no answer came, or the invocation ended between
sending and recording: see ledger.SENDING_PREFIX) to a destination whose UNKNOWN_OUTCOME_POLICIES is
"hold" is not owed again until an operator settles it: once_per_lead never, on_change not for the
same payload (a changed payload is a new delivery).

A lead that moves up a band is delivered to the destinations it newly qualifies for. One that
drops is not "un-routed", and a destination it qualifies for only because its score dropped
(nurture after outreach) is withheld: the rules, applied at the highest score the lead was
delivered at, would not have chosen it. A callback older than the newest one already routed
for the lead is superseded and delivers nothing (SQS does not keep order).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from clay_pipeline.core.column_values import read_instant
from clay_pipeline.core.json_text import dump_json
from clay_pipeline.core.rules import ONCE_PER_LEAD, Policy


class Owed(enum.StrEnum):
    SEND = "send"
    ALREADY_DELIVERED = "already_delivered"  # once_per_lead, delivered within the mark days
    UNCHANGED = "unchanged"  # on_change, this very payload was delivered last
    WITHHELD = "withheld_score_dropped"  # chosen only because the score dropped below the peak
    UNKNOWN = "unknown_outcome"  # an earlier delivery may have arrived: an operator settles it


@dataclass(frozen=True)
class Delivered:
    """One destination's entry in a lead's ledger: when, which payload and at which score (kept small: every
    write of the lead's item is billed by its size)."""

    at: int  # epoch seconds
    payload_hash: str
    score: float | None

    @classmethod
    def from_value(cls, value: Any) -> Delivered:
        fields = value if isinstance(value, dict) else {"at": value}  # a bare timestamp: an entry without details
        score = fields.get("score")
        return cls(
            at=int(fields.get("at") or 0),
            payload_hash=str(fields.get("hash") or ""),
            score=float(score) if isinstance(score, (int, float)) else None,
        )

    def to_value(self) -> dict[str, Any]:
        value = {"at": self.at, "hash": self.payload_hash, "score": self.score}
        return {name: item for name, item in value.items() if item is not None}


@dataclass(frozen=True)
class LeadHistory:
    """What the ledger knew of the lead when this invocation claimed it."""

    delivered: Mapping[str, Delivered]
    routed_received_at: str = ""  # received_at of the newest callback routed for the lead

    def remembered(self, now: float, mark_days: int) -> dict[str, Delivered]:
        """Deliveries within the mark days (an older one no longer counts, whether or not it was deleted)."""
        since = now - mark_days * 86400
        return {name: entry for name, entry in self.delivered.items() if entry.at >= since}

    def supersedes(self, received_at: str) -> bool:
        """True when a newer callback of this lead was already routed: this older one must not undo it."""
        return bool(self.routed_received_at) and newer(self.routed_received_at, received_at)


@dataclass(frozen=True)
class Lease:
    """An invocation's hold on one lead's deliveries, and what the ledger knew when it was taken."""

    lead_key: str
    owner: str  # this claim's token: the complete write frees the lease only while it is still ours
    history: LeadHistory
    callback_id: str  # the callback whose enrichment the item held at the claim ('' when none)
    held: dict[str, str] = field(default_factory=dict)  # what a pause held for the lead (ledger.held_markers)
    # Intents an earlier invocation recorded and never completed (it ended between sending and recording),
    # and deliveries already known to be unknown: {destination: {at, hash, score[, reason]}}
    lapsed: dict[str, dict[str, Any]] = field(default_factory=dict)
    unknown: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Busy:
    """Another invocation holds the lead's lease."""

    seconds: int  # until that lease lapses, at the latest


def peak_score(remembered: Mapping[str, Delivered]) -> float | None:
    scores = [entry.score for entry in remembered.values() if entry.score is not None]
    return max(scores) if scores else None


def plan(
    chosen: tuple[str, ...],
    policies: Mapping[str, Policy],
    payload_hashes: Mapping[str, str],
    remembered: Mapping[str, Delivered],
    chosen_at_peak: frozenset[str] | None,
    unknown: Mapping[str, Delivered] | None = None,
) -> dict[str, Owed]:
    """What each chosen destination is owed.

    `chosen_at_peak`: the rules' choice at the lead's peak score, when its score dropped below it.
    `unknown`: held deliveries whose outcome is unknown, by destination.
    """
    owed: dict[str, Owed] = {}
    for name in chosen:
        entry = remembered.get(name)
        lost = (unknown or {}).get(name)
        if entry is not None and policies[name] == ONCE_PER_LEAD:
            owed[name] = Owed.ALREADY_DELIVERED
        elif lost is not None and (policies[name] == ONCE_PER_LEAD or lost.payload_hash == payload_hashes[name]):
            owed[name] = Owed.UNKNOWN
        elif entry is not None and entry.payload_hash == payload_hashes[name]:
            owed[name] = Owed.UNCHANGED
        elif entry is None and chosen_at_peak is not None and name not in chosen_at_peak:
            owed[name] = Owed.WITHHELD
        else:
            owed[name] = Owed.SEND
    return owed


def payload_hash(payload: Any) -> str:
    """Hash of the canonical JSON a destination receives (what on_change compares)."""
    return hashlib.sha256(dump_json(payload).encode()).hexdigest()[:16]  # 64 bits: enough to tell versions apart


def _instant(text: str) -> datetime | str:
    """The moment in UTC (a naive one taken as UTC, so any two compare), else the text itself."""
    try:
        return read_instant(text)
    except ValueError:
        return text


def newer(first: str, second: str) -> bool:
    """Whether received_at `first` is later than `second` (ISO timestamps; unparsable ones compare as text)."""
    a, b = _instant(first), _instant(second)
    if type(a) is not type(b):
        return first > second
    return a > b  # type: ignore[operator]
