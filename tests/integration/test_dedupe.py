"""Dedupe marks on the state table (moto): the claim's one conditional write, and concurrent claims and
takeovers of which exactly one wins. Confirming, holding and taking over are tested on the in-memory state store
in tests/unit/services/test_dedupe.py; how a mark found by a claim is read, on plain data in
tests/unit/core/test_sending.py."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.core.sending import Claim
from clay_pipeline.services.dedupe import Deduper
from tests.dynamodb_calls import recorded_dynamodb_calls

pytestmark = pytest.mark.integration


@pytest.fixture
def store(stack: Any) -> StateStore:
    return StateStore(stack.table_names["StateTable"])


def test_a_claim_is_one_write_that_lasts_the_dedupe_days(store: StateStore) -> None:
    dedupe = Deduper(store, days=30)
    with recorded_dynamodb_calls() as calls:
        assert dedupe.claim("ld_one", {"batch": "b1"}, lease_seconds=60) is Claim.CLAIMED
    assert [operation for operation, _ in calls.calls] == ["PutItem"]
    mark = store.get("dedupe#ld_one")
    assert mark is not None
    assert (mark["status"], mark["batch"]) == ("sending", "b1")
    assert mark["expires_at"] - time.time() > 29 * 86_400
    assert 0 < mark["lease_until"] - time.time() <= 62


def test_a_lapsed_unrecorded_claim_is_taken_over_by_one_copy_when_unrecorded_claims_are_not_held(
    store: StateStore, captured_logs: io.StringIO
) -> None:
    # GIVEN the routine path's dedupe (a run no record lists is collected by nothing) and a claimant that died
    dedupe = Deduper(store, days=30, confirmed_by=lambda batch, lead: False, hold_unrecorded=False)
    dedupe.claim("ld_orphan", {"batch": "b9"}, lease_seconds=-5)
    # WHEN ten later copies of other invocations claim it at once
    with ThreadPoolExecutor(10) as pool:
        claims = list(pool.map(lambda n: dedupe.claim("ld_orphan", {"batch": f"b{n}"}, lease_seconds=60), range(10)))
    # THEN one takes the mark over and sends, the others find it in flight, and nothing is held as a lost answer
    assert sorted(claim.value for claim in claims) == ["claimed"] + ["in_flight"] * 9
    mark = store.get("dedupe#ld_orphan")
    assert mark is not None and mark["status"] == "sending" and mark["batch"] != "b9"
    assert dedupe.seconds_held("ld_orphan") == 0
    assert "ended without recording a send: it is sent again" in captured_logs.getvalue()


def test_only_one_of_many_concurrent_claims_wins(store: StateStore) -> None:
    dedupe = Deduper(store, days=30)
    with ThreadPoolExecutor(10) as pool:
        claims = list(pool.map(lambda _: dedupe.claim("ld_race"), range(10)))
    assert claims.count(Claim.CLAIMED) == 1
