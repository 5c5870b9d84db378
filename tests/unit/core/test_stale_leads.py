"""Stale leads on plain data (core/stale_leads.py): what counts as a callback since the send, the window a
sweep reads, which claim was never queued, and the ids exported to Clay."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from clay_pipeline.core.callback_acceptance import routing_message
from clay_pipeline.core.leads import derive_lead_id
from clay_pipeline.core.stale_leads import (
    called_back_since,
    clay_filter_value,
    clay_run_condition,
    may_hold_unqueued_claim,
    sweep_window,
    unqueued_claim,
)

pytestmark = pytest.mark.unit

HOUR = 3600


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_a_callback_counts_only_when_it_came_after_the_send() -> None:
    sent = int(at("2026-11-22T10:00:00"))
    assert called_back_since({"received_at": "2026-11-22T10:00:00.250000+00:00"}, sent)
    assert not called_back_since({"received_at": "2026-11-21T09:00:00+00:00"}, sent)  # an earlier send's
    assert not called_back_since({"callbacks": 0}, sent)
    assert not called_back_since(None, sent)


def test_a_sweep_reads_from_where_the_last_one_ended_to_the_stale_age() -> None:
    now = 1_000 * HOUR
    # a first sweep looks back one interval; the next starts at the checkpoint, so a missed run is caught up
    assert sweep_window(now, 24 * HOUR, None, HOUR, 8 * 24 * HOUR) == (now - 25 * HOUR, now - 24 * HOUR)
    assert sweep_window(now, 24 * HOUR, now - 27 * HOUR, HOUR, 8 * 24 * HOUR) == (now - 27 * HOUR, now - 24 * HOUR)
    # never further back than the batch records are kept
    assert sweep_window(now, 24 * HOUR, 0, HOUR, 8 * 24 * HOUR) == (now - 8 * 24 * HOUR, now - 24 * HOUR)


def test_the_clay_exports_name_exactly_the_given_ids() -> None:
    ids = [derive_lead_id("a@x.io", None, None, None, None) or "", "ld_b"]
    assert clay_filter_value(ids) == f"{ids[0]}, ld_b"
    assert clay_run_condition(ids) == f'/lead_id == "{ids[0]}" OR /lead_id == "ld_b"'
    # a producer's own lead_id with a quote or a backslash stays one string literal
    assert clay_run_condition(['we"ird\\id']) == '/lead_id == "we\\"ird\\\\id"'


# -- a callback's claim that was never queued ------------------------------------------------------
CLAIMED_AT = "2026-11-22T10:00:00+00:00"
AFTER = 900


def claimed_item(**changes: object) -> dict[str, object]:
    """A lead item as the callback's claim leaves it (adapters/callback_claims.py)."""
    item: dict[str, object] = {
        "lead_key": "ld_a",
        "callback_id": "ld_a#v2",
        "enrichment": {"lead_id": "ld_a", "email": "a@acme.com"},
        "received_at": CLAIMED_AT,
        "routing_status": "received",
        "pending_v2": CLAIMED_AT,
        "callbacks": 2,
    }
    item.update(changes)
    return {key: value for key, value in item.items() if value is not None}


def test_a_claim_older_than_the_threshold_gets_the_callbacks_own_routing_message() -> None:
    now = at("2026-11-22T10:15:00")
    assert unqueued_claim(claimed_item(), now, AFTER) == routing_message(
        "ld_a#v2", "ld_a", {"lead_id": "ld_a", "email": "a@acme.com"}, CLAIMED_AT
    )
    assert unqueued_claim(claimed_item(), now - 1, AFTER) is None  # 14:59 old: maybe still in flight


def test_a_completed_claim_or_a_superseded_one_needs_nothing() -> None:
    now = at("2026-11-23T10:00:00")
    # the router's first write moved the version into `versions`
    assert unqueued_claim(claimed_item(pending_v2=None, versions=["v2"]), now, AFTER) is None
    # a claim of an older version, superseded by a newer stored (and routed) one
    older = claimed_item(pending_v2=None, pending_v1="2026-11-22T09:00:00+00:00", routing_status="routed")
    assert unqueued_claim(older, now, AFTER) is None
    # nothing stored to queue
    assert unqueued_claim(claimed_item(enrichment=None), now, AFTER) is None
    assert unqueued_claim(None, now, AFTER) is None


def test_the_message_carries_the_claims_own_received_at() -> None:
    # the claim's value is what the callback queued (and what the router orders versions by); read from the claim
    item = claimed_item(received_at="2026-11-22T10:14:00+00:00")
    message = unqueued_claim(item, at("2026-11-22T10:15:00"), AFTER)
    assert message is not None and message["received_at"] == CLAIMED_AT


def test_only_items_still_in_the_claims_status_and_old_enough_are_read_whole() -> None:
    now = at("2026-11-22T10:15:00")
    assert may_hold_unqueued_claim(claimed_item(), now, AFTER)
    assert not may_hold_unqueued_claim(claimed_item(), now - 1, AFTER)
    for status in ("routed", "paused", "failed", "stale", None):
        assert not may_hold_unqueued_claim(claimed_item(routing_status=status), now, AFTER)
    assert not may_hold_unqueued_claim(claimed_item(received_at=None), now, AFTER)
    assert not may_hold_unqueued_claim(None, now, AFTER)
