"""Contract of the delivery ledger's fake (tests/fakes/ledger.py): every test runs on LeadLedger against moto and
on the fake, refusals included (a held lease, a lost lease, a newer callback's outcome)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from clay_pipeline.adapters.dynamodb import is_condition_failure
from clay_pipeline.core.policies import Busy, Delivered, Lease
from tests.fakes.contract import LEASE_SECONDS, LeadPorts, OnDynamoDB, OnFakes

pytestmark = pytest.mark.integration

SENT = Delivered(at=1_767_225_600, payload_hash="h1", score=85.0)


def claimed(ports: LeadPorts, lead_key: str, **intents: Delivered) -> Lease:
    lease = ports.ledger.claim(lead_key, intents)
    assert isinstance(lease, Lease)
    return lease


class LedgerContract:
    """What both LeadLedger and FakeLeadLedger must do."""

    def test_a_claim_takes_the_lease_unless_another_holds_it_and_takes_a_lapsed_one_over(
        self, ports: LeadPorts
    ) -> None:
        # WHEN a lead never routed is claimed THEN the lease is ours, with an empty ledger, and the intents written
        lease = claimed(ports, "ld_a", outreach=SENT)
        assert (lease.history.delivered, lease.callback_id, lease.lapsed) == ({}, "", {})
        item = ports.item("ld_a")
        assert item["lease_owner"] == lease.owner and item["deliveries"] == {}
        assert item["sending_outreach"] == {"at": SENT.at, "hash": "h1", "score": 85}
        assert 0 <= item["lease_until"] - time.time() <= LEASE_SECONDS
        # AND of ten invocations claiming one lead at the same moment, exactly one gets its lease
        with ThreadPoolExecutor(max_workers=10) as pool:
            racing = list(pool.map(lambda _: ports.ledger.claim("ld_race"), range(10)))
        assert sum(isinstance(claim, Lease) for claim in racing) == 1
        # THEN a second claim meanwhile is refused with how long to wait, and changes nothing
        busy = ports.ledger.claim("ld_a", {"zapier": SENT})
        assert isinstance(busy, Busy) and LEASE_SECONDS - 1 <= busy.seconds <= LEASE_SECONDS + 1
        assert ports.item("ld_a") == item
        # WHEN the lease lapses (its invocation crashed) THEN it is taken over, and the uncompleted intent is seen
        ports.put("ld_a", lease_until=int(time.time()) - 1, deliveries={"slack": {"at": 5}}, callback_id="ld_a#2")
        ports.put("ld_a", held_hubspot="2026-01-01", unknown_zapier={"at": 7, "reason": "timeout"})
        again = claimed(ports, "ld_a")
        assert again.owner != lease.owner
        assert again.history.delivered == {"slack": Delivered(5, "", None)}
        assert (again.callback_id, again.held) == ("ld_a#2", {"hubspot": "2026-01-01"})
        assert again.lapsed == {"outreach": {"at": SENT.at, "hash": "h1", "score": 85}}
        assert again.unknown == {"zapier": {"at": 7, "reason": "timeout"}}

    def test_an_intent_is_written_only_while_the_lease_is_ours(self, ports: LeadPorts) -> None:
        lease = claimed(ports, "ld_i")
        ports.ledger.record_intent(lease, {"zapier": SENT})
        assert "sending_zapier" in ports.item("ld_i")
        # WHEN another invocation took the lease over THEN the intent is refused (nothing may be sent)
        ports.put("ld_i", lease_owner="other")
        with pytest.raises(ClientError) as refused:
            ports.ledger.record_intent(lease, {"outreach": SENT})
        assert is_condition_failure(refused.value) and "sending_outreach" not in ports.item("ld_i")
        # AND on a lead without any lease
        with pytest.raises(ClientError):
            ports.ledger.record_intent(Lease("ld_none", "nobody", lease.history, ""), {"outreach": SENT})

    def test_complete_records_the_deliveries_and_outcome_and_frees_the_lease(self, ports: LeadPorts) -> None:
        ports.put("ld_c", callback_id="ld_c#1", routing_status="received", held_slack="x", unknown_zapier={"at": 1})
        lease = claimed(ports, "ld_c", outreach=SENT)
        outcome = {"routing_status": "routed", "destinations": {"outreach": "delivered"}, "skipped_reason": None}
        written = ports.ledger.complete(
            lease,
            {"outreach": SENT},
            "2026-01-01T00:00:00",
            outcome,
            "ld_c#1",
            {"slack": None},
            {"zapier": None},
            ["outreach"],
        )
        assert written is True
        item = ports.item("ld_c")
        assert item == {
            "lead_key": "ld_c",
            "callback_id": "ld_c#1",
            "routing_status": "routed",
            "destinations": {"outreach": "delivered"},
            "deliveries": {"outreach": {"at": SENT.at, "hash": "h1", "score": 85}},
            "routed_received_at": "2026-01-01T00:00:00",
        }

    def test_complete_keeps_a_newer_callbacks_outcome_and_a_new_owners_lease(self, ports: LeadPorts) -> None:
        # GIVEN a newer callback stored while we delivered THEN our deliveries are recorded and the lease freed,
        # but the outcome stays the newer callback's
        ports.put("ld_n", callback_id="ld_n#1", routing_status="received")
        lease = claimed(ports, "ld_n")
        ports.put("ld_n", callback_id="ld_n#2")
        assert (
            ports.ledger.complete(lease, {"slack": SENT}, "2026-01-01", {"routing_status": "routed"}, "ld_n#1") is True
        )
        item = ports.item("ld_n")
        assert (item["routing_status"], set(item["deliveries"]), "lease_owner" in item) == (
            "received",
            {"slack"},
            False,
        )
        assert item["routed_received_at"] == "2026-01-01"
        # GIVEN our lease lapsed and another invocation took it THEN False: our deliveries and markers are recorded
        # without touching its lease or the outcome
        lease = claimed(ports, "ld_n")
        ports.put("ld_n", lease_owner="usurper", lease_until=int(time.time()) + 120)
        held = {"hubspot": "2026-01-02"}
        assert (
            ports.ledger.complete(lease, {"zapier": SENT}, "2026-01-02", {"routing_status": "routed"}, "ld_n#2", held)
            is False
        )
        item = ports.item("ld_n")
        assert (item["lease_owner"], item["routing_status"], item["routed_received_at"]) == (
            "usurper",
            "received",
            "2026-01-01",
        )
        assert (set(item["deliveries"]), item["held_hubspot"]) == ({"slack", "zapier"}, "2026-01-02")
        # AND with nothing to record, nothing is written
        before = ports.item("ld_n")
        assert ports.ledger.complete(lease, {}) is False
        assert ports.item("ld_n") == before

    def test_a_delivery_cannot_be_recorded_on_an_item_without_a_ledger(self, ports: LeadPorts) -> None:
        # GIVEN a lead item whose ledger map is missing (never claimed) THEN DynamoDB refuses the nested path
        ports.put("ld_v", callback_id="ld_v#1")
        lease = Lease("ld_v", "nobody", claimed(ports, "ld_other").history, "")
        with pytest.raises(ClientError):
            ports.ledger.complete(lease, {"slack": SENT})

    def test_mark_held_remembers_paused_destinations_without_the_lease(self, ports: LeadPorts) -> None:
        ports.ledger.mark_held("ld_h", ("nurture", "zapier"), "2026-01-01T00:00:00")
        assert ports.item("ld_h") == {
            "lead_key": "ld_h",
            "held_nurture": "2026-01-01T00:00:00",
            "held_zapier": "2026-01-01T00:00:00",
        }
        lease = claimed(ports, "ld_h")
        assert lease.held == {"nurture": "2026-01-01T00:00:00", "zapier": "2026-01-01T00:00:00"}

    def test_the_claim_and_the_held_mark_accept_the_callbacks_they_route(self, ports: LeadPorts) -> None:
        # GIVEN two versions of a lead claimed by the callback, and one listed before
        ports.put("ld_v", pending_v1="t1", pending_v2="t2", versions=["v0"])
        # WHEN the router's claim routes v2 and supersedes v1 THEN both are accepted in that write, nothing else moves
        lease = ports.ledger.claim("ld_v", {}, ["ld_v#v2", "ld_v#v1"])
        assert isinstance(lease, Lease)
        item = ports.item("ld_v")
        assert item["versions"] == ["v0", "v2", "v1"] and not {"pending_v1", "pending_v2"} & set(item)
        # AND a claim refused (the lease held) accepts nothing
        ports.put("ld_v", pending_v3="t3")
        assert isinstance(ports.ledger.claim("ld_v", {}, ["ld_v#v3"]), Busy)
        assert "pending_v3" in ports.item("ld_v")
        # AND the mark of what a pause holds accepts the version of a lead claimed without its lease
        ports.put("ld_p", pending_v9="t9")
        ports.ledger.mark_held("ld_p", ("nurture",), "t9", ["ld_p#v9"])
        item = ports.item("ld_p")
        assert (item["versions"], item["held_nurture"], "pending_v9" in item) == (["v9"], "t9", False)
        # AND a message no callback queued (its callback_id the lead key: no version) accepts nothing
        assert isinstance(ports.ledger.claim("ld_n", {}, ["ld_n"]), Lease)
        assert "versions" not in ports.item("ld_n")


class TestOnDynamoDB(OnDynamoDB, LedgerContract):
    """The adapter on moto."""


class TestOnFake(OnFakes, LedgerContract):
    """The fake."""
