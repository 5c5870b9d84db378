"""Accepting each distinct callback once: what the lead's item says about a new version of the lead.

A callback is a version of a lead: `callback_id` is `<lead_key>#<hash of the canonical body>`, and the
hash (the version) tells two callbacks of a lead apart. The leads table (adapters/callback_claims.py)
claims a version and stores its lead in one conditional write: it passes when the version is neither one
of the lead's recently accepted versions nor claimed already, and the stored lead is not newer. The claim
(`pending_<version>`, holding the claiming callback's received_at) stays until the router's first write on
the lead's item for that version moves the version into the accepted ones (adapters/leads_table.py
accept_versions): the callback itself writes once. When the claim write is refused, the item as it was
(DynamoDB's ALL_OLD) is read here, in this order:
- the version is among the recently accepted ones: a DUPLICATE (an identical re-send);
- its claim carries this very received_at: the invocation's OWN_CLAIM, written by a try whose answer was lost;
- it is claimed by another callback: PENDING, that callback queued it or is queueing it (or died first);
- otherwise only the stored lead is newer: NEWER_STORED, the version is claimed without replacing it.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

# Exactly once needs the versions an identical re-send can still carry: Clay's retries (immediate) and its
# re-sends of a lost answer come within a few versions of the original. The list keeps the newest
# KEPT_VERSIONS; it is trimmed back to that once it reaches KEPT_VERSIONS + TRIM_SLACK (one extra write
# per TRIM_SLACK callbacks of a lead that has many), so the item holds at most 47 versions of 32
# characters (about 1.6 KB), whatever the number of re-sends. A version older than that is accepted
# again when it is re-sent (docs/ARCHITECTURE.md, "Bounded state per lead").
KEPT_VERSIONS = 32
TRIM_SLACK = 16
PENDING_PREFIX = "pending_"  # + version: a callback's claim of that version, until the router accepts it


class Acceptance(enum.Enum):
    ACCEPTED = "accepted"  # claimed and stored: queue it (the router completes the claim)
    DUPLICATE = "duplicate"  # this very body was accepted recently
    # An identical callback claimed it and has queued it, or is queueing it, or died before: queue a copy
    # (the router's ledger delivers it once) and answer as a duplicate.
    PENDING = "pending"


@dataclass(frozen=True)
class Claim:
    """What the claim write found, and the received_at the version is queued with (the claiming callback's:
    a copy of a pending version carries the original's, so it never looks newer than the lead's next version)."""

    acceptance: Acceptance
    received_at: str


class Refusal(enum.Enum):
    """Why the claim-and-store write was refused, read from the item it met."""

    DUPLICATE = "duplicate"
    OWN_CLAIM = "own_claim"
    PENDING = "pending"
    NEWER_STORED = "newer_stored"


# What each refusal answers; NEWER_STORED has no answer yet: the version is claimed by a second write.
ACCEPTANCE_OF_REFUSAL = {
    Refusal.DUPLICATE: Acceptance.DUPLICATE,
    Refusal.OWN_CLAIM: Acceptance.ACCEPTED,
    Refusal.PENDING: Acceptance.PENDING,
}


def callback_version(callback_id: str) -> str:
    """The body hash part of a callback id (`<lead_key>#<hash>`): what tells two callbacks of a lead apart."""
    return callback_id.rsplit("#", 1)[-1]


def read_refusal(accepted_versions: Collection[str], pending: object, version: str, received_at: str) -> Refusal:
    """Why the item refused to let `version` be claimed by the callback received at `received_at`.

    accepted_versions: the lead's recently accepted versions; pending: the value of the item's claim on this
    version (the claiming callback's received_at), None without one.
    """
    if version in accepted_versions:
        return Refusal.DUPLICATE
    if pending == received_at:
        return Refusal.OWN_CLAIM
    if pending is not None:
        return Refusal.PENDING
    return Refusal.NEWER_STORED


def claimed_at(pending: object, received_at: str) -> str:
    """The received_at a copy of a pending version is queued with: the claim's. A claim written before claims
    held their callback's received_at (a number: a lease's end) gives this callback's own."""
    return pending if isinstance(pending, str) else received_at


def versions_to_trim(kept: Collection[str]) -> int:
    """How many of the oldest accepted versions to drop after an acceptance: none until the list reaches
    KEPT_VERSIONS + TRIM_SLACK, then down to KEPT_VERSIONS."""
    return len(kept) - KEPT_VERSIONS if len(kept) >= KEPT_VERSIONS + TRIM_SLACK else 0


def routing_message(callback_id: str, lead_key: str, lead: dict[str, Any], received_at: str) -> dict[str, Any]:
    """The RoutingQueue message of an accepted callback (read back by core/routing_message.py): what the callback
    queues, and what the stale-lead sweeper queues again for a claim the callback never queued."""
    return {"callback_id": callback_id, "lead_key": lead_key, "lead": lead, "received_at": received_at}
