"""Stale leads as plain data: which leads count as called back, which window a sweep reads, which called-back
lead holds a claim its callback never queued, and the text that recovers them in Clay (the lookup and the sweep
over the tables: services/sweeper.py)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from clay_pipeline.core.callback_acceptance import PENDING_PREFIX, callback_version, routing_message

CLAIMED_STATUS = "received"  # the routing_status a callback's claim writes; the router's outcome replaces it


def called_back_since(item: dict[str, Any] | None, sent_at: int) -> bool:
    received = str((item or {}).get("received_at") or "")
    return bool(received) and datetime.fromisoformat(received).timestamp() >= sent_at


# -- a callback's claim that was never queued ---------------------------------------------------
# The callback claims a version on the lead's item (`pending_<version>`, with the enrichment and
# routing_status "received"), then queues the routing message; the router's first write removes the claim.
# A callback that dies in between (timeout, out of memory) answers Clay 5xx, which Clay does not re-send
# (docs/ARCHITECTURE.md), so the claim outliving `after_seconds` (well past the callback's timeout and
# RoutingQueue's usual latency) means the message was most likely never queued: the sweeper queues it.


def may_hold_unqueued_claim(item: dict[str, Any] | None, now: float, after_seconds: int) -> bool:
    """From the attributes the sweep reads anyway: the router has written nothing for the stored version
    (still the claim's routing_status) and the stored callback came at least `after_seconds` ago. Only these
    items are read whole (unqueued_claim decides)."""
    item = item or {}
    received = str(item.get("received_at") or "")
    return (
        item.get("routing_status") == CLAIMED_STATUS
        and bool(received)
        and datetime.fromisoformat(received).timestamp() <= now - after_seconds
    )


def unqueued_claim(item: dict[str, Any] | None, now: float, after_seconds: int) -> dict[str, Any] | None:
    """The routing message to queue again for the whole lead item `item`, or None.

    Only the stored version counts: its claim still in place (the router never wrote for it) and older than
    `after_seconds`. A claim of an older version that a newer stored callback superseded needs nothing (the
    newer one is routed), and a claim the router completed is gone. The message is the callback's own, with
    the claim's received_at.
    """
    item = item or {}
    callback_id = str(item.get("callback_id") or "")
    if not callback_id or "enrichment" not in item or "lead_key" not in item:
        return None
    claimed_at = str(item.get(PENDING_PREFIX + callback_version(callback_id)) or "")
    if not claimed_at or datetime.fromisoformat(claimed_at).timestamp() > now - after_seconds:
        return None
    return routing_message(callback_id, str(item["lead_key"]), item["enrichment"], claimed_at)


def sweep_window(
    now: int, stale_after_seconds: int, swept_to: int | None, first_window_seconds: int, kept_seconds: int
) -> tuple[int, int]:
    """The sends a sweep reads, (start, end]: from where the last sweep ended (`swept_to`; a first sweep looks
    back `first_window_seconds`) to `stale_after_seconds` ago, never further back than the batch records are
    kept, so a missed or failed run is caught up by the next and no window is read twice."""
    end = now - stale_after_seconds
    start = swept_to if swept_to is not None else end - first_window_seconds
    return max(start, now - kept_seconds), end


# -- recovering them in Clay ---------------------------------------------------------------------
# A stale lead's row is in the Clay table (the batch record lists only leads Clay accepted); only its
# HTTP API column's call back did not get through. Running that column again for exactly those rows costs
# one Clay action per row and no data credits (Clay University, "HTTP API", FAQ "Does using HTTP API
# consume Data Credits?"), where re-queueing the lead (STALE_REQUEUE) creates a second row whose every
# enrichment column runs, and is billed, again.
LEAD_ID_COLUMN = "lead_id"  # the column the sender's row carries and the HTTP API column's body sends back


def clay_filter_value(lead_ids: Iterable[str]) -> str:
    """One comma-separated line: the values of a Clay table filter `lead_id` *contains any of*.

    Clay's text filters include "contains any of" a list of values (Clay University, "Comparison
    operators"). It matches substrings, which is exact for derived ids (all `ld_` plus 24 hex digits);
    a producer's own shorter id can also match a longer one that holds it.
    """
    return ", ".join(lead_ids)


def clay_run_condition(lead_ids: Iterable[str]) -> str:
    """A run condition ("Only run if") that holds for exactly these rows, in Clay's formula syntax.

    `/lead_id` is Clay's column reference (Clay University, "Conditional runs"), `==` its exact text
    comparison ("Comparison operators") and `OR` its logical operator; each id is a JSON string
    literal, so a quote inside one stays text. Clay runs, and bills, only the rows whose condition holds.
    """
    return " OR ".join(f"/{LEAD_ID_COLUMN} == {json.dumps(lead_id, ensure_ascii=False)}" for lead_id in lead_ids)
