"""Accepting each distinct callback once: what the lead's item says about a new version of the lead.

A callback is a version of a lead: `callback_id` is `<lead_key>#<hash of the canonical body>`, and the
hash (the version) tells two callbacks of a lead apart. The leads table (adapters/callback_claims.py)
claims a version and stores its lead in one conditional write: it passes when the version is neither one
of the lead's recently accepted versions nor claimed by a live lease, and the stored lead is not newer.
When it is refused, the item as it was (DynamoDB's ALL_OLD) is read here, in this order:
- the version is among the recently accepted ones: a DUPLICATE (an identical re-send);
- its claim carries this very lease: the invocation's OWN_CLAIM, written by a try whose answer was lost;
- its claim's lease has not ended: IN_PROGRESS (an identical callback in flight);
- otherwise only the stored lead is newer: NEWER_STORED, the version is claimed without replacing it.
"""

from __future__ import annotations

import enum
from collections.abc import Collection

# Exactly once needs the versions an identical re-send can still carry: Clay's retries (immediate) and its
# re-sends of a lost answer come within a few versions of the original. The list keeps the newest
# KEPT_VERSIONS; it is trimmed back to that once it reaches KEPT_VERSIONS + TRIM_SLACK (one extra write
# per TRIM_SLACK callbacks of a lead that has many), so the item holds at most 47 versions of 32
# characters (about 1.6 KB), whatever the number of re-sends. A version older than that is accepted
# again when it is re-sent (docs/ARCHITECTURE.md, "Bounded state per lead").
KEPT_VERSIONS = 32
TRIM_SLACK = 16


class Acceptance(enum.Enum):
    ACCEPTED = "accepted"  # claimed and stored: queue it, then complete the claim
    DUPLICATE = "duplicate"  # this very body was accepted recently
    IN_PROGRESS = "in_progress"  # an identical callback holds the claim right now


class Refusal(enum.Enum):
    """Why the claim-and-store write was refused, read from the item it met."""

    DUPLICATE = "duplicate"
    OWN_CLAIM = "own_claim"
    IN_PROGRESS = "in_progress"
    NEWER_STORED = "newer_stored"


# What each refusal answers; NEWER_STORED has no answer yet: the version is claimed by a second write.
ACCEPTANCE_OF_REFUSAL = {
    Refusal.DUPLICATE: Acceptance.DUPLICATE,
    Refusal.OWN_CLAIM: Acceptance.ACCEPTED,
    Refusal.IN_PROGRESS: Acceptance.IN_PROGRESS,
}


def callback_version(callback_id: str) -> str:
    """The body hash part of a callback id (`<lead_key>#<hash>`): what tells two callbacks of a lead apart."""
    return callback_id.rsplit("#", 1)[-1]


def read_refusal(
    accepted_versions: Collection[str], pending_lease: float | None, version: str, lease_until: float, now: float
) -> Refusal:
    """Why the item refused to let `version` be claimed with a lease to `lease_until` at `now`.

    accepted_versions: the lead's recently accepted versions; pending_lease: the end (epoch seconds) of the
    claim the item holds on this version, None without one.
    """
    if version in accepted_versions:
        return Refusal.DUPLICATE
    if pending_lease == lease_until:
        return Refusal.OWN_CLAIM
    if (pending_lease or 0) >= now:
        return Refusal.IN_PROGRESS
    return Refusal.NEWER_STORED


def versions_to_trim(kept: Collection[str]) -> int:
    """How many of the oldest accepted versions to drop after an acceptance: none until the list reaches
    KEPT_VERSIONS + TRIM_SLACK, then down to KEPT_VERSIONS."""
    return len(kept) - KEPT_VERSIONS if len(kept) >= KEPT_VERSIONS + TRIM_SLACK else 0
