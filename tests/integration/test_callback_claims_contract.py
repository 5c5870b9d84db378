"""Contract of the callback claims' fake (tests/fakes/callback_claims.py): every test runs on CallbackClaims
against moto and on the fake, refusals included (duplicates, pending claims, newer enrichments)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from clay_pipeline.core.callback_acceptance import KEPT_VERSIONS, TRIM_SLACK, Acceptance, Claim
from tests.fakes.contract import LeadPorts, OnDynamoDB, OnFakes

pytestmark = pytest.mark.integration

AT = "2026-01-01T00:01:00+00:00"
LATER = "2026-01-01T00:01:05+00:00"


class CallbackClaimsContract:
    """What both CallbackClaims and FakeCallbackClaims must do."""

    def test_a_claim_stores_the_lead_and_an_identical_callback_finds_it_pending_until_the_router_accepts_it(
        self, ports: LeadPorts
    ) -> None:
        claims = ports.claims
        ports.put("ld_a", routes=["x"], destinations={"slack": "delivered"}, skipped_reason="cold")
        # WHEN a version is claimed THEN the lead is stored and counted, the last outcome cleared, the claim held
        assert claims.accept("ld_a", "ld_a#v1", {"icp_score": 85.0}, AT) == Claim(Acceptance.ACCEPTED, AT)
        item = ports.item("ld_a")
        assert {k: item[k] for k in ("callback_id", "enrichment", "received_at", "routing_status", "callbacks")} == {
            "callback_id": "ld_a#v1",
            "enrichment": {"icp_score": 85},
            "received_at": AT,
            "routing_status": "received",
            "callbacks": 1,
        }
        assert not {"routes", "destinations", "skipped_reason", "expires_at"} & set(item)
        assert item["pending_v1"] == AT
        # AND an identical callback meanwhile finds it pending (its copy carries the claim's received_at); the same
        # try again (its answer lost) its own claim; neither is counted again
        assert claims.accept("ld_a", "ld_a#v1", {"icp_score": 85}, LATER) == Claim(Acceptance.PENDING, AT)
        assert claims.accept("ld_a", "ld_a#v1", {"icp_score": 85}, AT) == Claim(Acceptance.ACCEPTED, AT)
        assert ports.item("ld_a")["callbacks"] == 1
        # AND of ten identical callbacks claiming at the same moment, exactly one is accepted, the rest find it pending
        with ThreadPoolExecutor(max_workers=10) as pool:
            racing = list(pool.map(lambda n: claims.accept("ld_r", "ld_r#v", {}, f"{AT}.{n}").acceptance, range(10)))
        assert sorted(racing, key=str) == [Acceptance.ACCEPTED] + [Acceptance.PENDING] * 9
        # WHEN the router's write accepts it THEN the version is remembered and the claim gone: the next identical
        # one is a duplicate
        ports.leads.accept("ld_a", ["ld_a#v1"])
        item = ports.item("ld_a")
        assert (item["versions"], "pending_v1" in item) == (["v1"], False)
        assert claims.accept("ld_a", "ld_a#v1", {"icp_score": 85}, LATER).acceptance is Acceptance.DUPLICATE
        ports.leads.accept("ld_a", ["ld_a#v1"])  # safe to repeat: listed once more
        assert ports.item("ld_a")["versions"] == ["v1", "v1"]

    def test_a_claim_never_lapses_and_a_released_one_frees_the_version(self, ports: LeadPorts) -> None:
        claims = ports.claims
        assert claims.accept("ld_b", "ld_b#v1", {"n": 1}, AT).acceptance is Acceptance.ACCEPTED
        # a claim written by the earlier code (a lease's end, long past) is pending too: the copy takes its own time
        ports.put("ld_b", pending_v2=time.time() - 3600)
        assert claims.accept("ld_b", "ld_b#v2", {"n": 2}, LATER) == Claim(Acceptance.PENDING, LATER)
        assert ports.item("ld_b")["callbacks"] == 1
        # WHEN the claim is released (the lead could not be queued) THEN the count drops and a re-send is accepted
        claims.release("ld_b", "ld_b#v1")
        item = ports.item("ld_b")
        assert (item["callbacks"], "pending_v1" in item) == (0, False)
        assert claims.accept("ld_b", "ld_b#v1", {"n": 1}, LATER) == Claim(Acceptance.ACCEPTED, LATER)
        # AND releasing a lead never stored still counts (ADD creates the item)
        claims.release("ld_never", "ld_never#v1")
        assert ports.item("ld_never") == {"lead_key": "ld_never", "callbacks": -1}

    def test_a_late_older_callback_is_counted_but_does_not_replace_the_newer_enrichment(self, ports: LeadPorts) -> None:
        claims = ports.claims
        claims.save_enrichment("ld_late", "ld_late#new", {"icp_score": 90}, "2026-01-01T00:02:00+00:00")
        claims.save_enrichment("ld_late", "ld_late#old", {"icp_score": 40}, "2026-01-01T00:01:00+00:00")
        stored = ports.leads.get("ld_late")
        assert stored is not None
        assert (stored["callbacks"], stored["callback_id"], stored["enrichment"]) == (
            2,
            "ld_late#new",
            {"icp_score": 90},
        )
        # AND an older version's claim is held like any other: an identical one meanwhile finds it pending
        assert claims.accept("ld_late", "ld_late#older", {"icp_score": 30}, AT) == Claim(Acceptance.ACCEPTED, AT)
        assert ports.item("ld_late")["pending_older"] == AT
        assert claims.accept("ld_late", "ld_late#older", {"icp_score": 30}, LATER) == Claim(Acceptance.PENDING, AT)
        assert ports.item("ld_late")["callbacks"] == 3

    def test_retention_sets_the_items_expiry_and_0_keeps_it(self, ports: LeadPorts) -> None:
        before = time.time()
        assert ports.claims_keeping(30).accept("ld_e", "ld_e#v", {}, AT).acceptance is Acceptance.ACCEPTED
        assert before + 30 * 86400 - 1 <= float(ports.item("ld_e")["expires_at"]) <= time.time() + 30 * 86400
        assert ports.claims_keeping(0).accept("ld_k", "ld_k#v", {}, AT).acceptance is Acceptance.ACCEPTED
        assert "expires_at" not in ports.item("ld_k")

    def test_the_versions_are_trimmed_to_the_newest_once_the_slack_is_used(self, ports: LeadPorts) -> None:
        claims = ports.claims
        total = KEPT_VERSIONS + TRIM_SLACK
        for number in range(total):
            claims.save_enrichment("ld_t", f"ld_t#{number:04d}", {"n": number}, f"2026-01-01T00:00:{number:02d}")
        versions = ports.item("ld_t")["versions"]
        assert versions == [f"{number:04d}" for number in range(total - KEPT_VERSIONS, total)]
        # AND a version trimmed away is accepted again when re-sent
        assert claims.accept("ld_t", "ld_t#0000", {"n": 0}, "2026-01-01T00:01:00").acceptance is Acceptance.ACCEPTED


class TestOnDynamoDB(OnDynamoDB, CallbackClaimsContract):
    """The adapter on moto."""


class TestOnFake(OnFakes, CallbackClaimsContract):
    """The fake."""
