"""adapters/ledger.py on plain data: the lease a claim returns, read from the lead's item as it was before the
claim. The claim's and complete write's conditions (leases, a newer callback) are tested on moto in
tests/integration/test_router.py and test_router_unknown_outcomes.py."""

from __future__ import annotations

import pytest

from clay_pipeline.adapters.ledger import lease_of

pytestmark = pytest.mark.unit


def test_the_lease_carries_the_ledger_and_the_marks_the_item_held() -> None:
    # GIVEN the lead's item as from_item reads it (numbers as int) with deliveries and each kind of mark
    item = {
        "lead_key": "ld_1",
        "callback_id": "ld_1#h2",
        "deliveries": {"outreach": {"at": 100, "hash": "h1", "score": 95}, "slack": 90},
        "routed_received_at": "2026-01-01T00:00:00+00:00",
        "held_hubspot": "2026-01-01T00:01:00+00:00",
        "sending_zapier": {"at": 120, "hash": "h2"},
        "unknown_nurture": {"at": 110, "reason": "timeout"},
    }
    # WHEN read as the lease just taken
    lease = lease_of("ld_1", "me", item)
    # THEN it has the deliveries (a bare timestamp too), what a pause held, lapsed intents and unknown outcomes
    assert (lease.lead_key, lease.owner, lease.callback_id) == ("ld_1", "me", "ld_1#h2")
    assert sorted(lease.history.delivered) == ["outreach", "slack"]
    assert (lease.history.delivered["outreach"].at, lease.history.delivered["outreach"].score) == (100, 95.0)
    assert lease.history.delivered["slack"].at == 90
    assert lease.history.routed_received_at == "2026-01-01T00:00:00+00:00"
    assert lease.held == {"hubspot": "2026-01-01T00:01:00+00:00"}
    assert lease.lapsed == {"zapier": {"at": 120, "hash": "h2"}}
    assert lease.unknown == {"nurture": {"at": 110, "reason": "timeout"}}


def test_a_lead_with_no_item_yet_is_a_lease_on_an_empty_ledger() -> None:
    lease = lease_of("new", "me", {})
    assert (lease.history.delivered, lease.callback_id, lease.held, lease.lapsed, lease.unknown) == ({}, "", {}, {}, {})
