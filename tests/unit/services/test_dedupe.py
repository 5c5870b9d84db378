"""Dedupe marks (services/dedupe.py) on the in-memory state store (tests/fakes/state_table.py, held to the
DynamoDB adapter by tests/integration/test_state_table_contract.py): claiming, confirming, holding, taking over.
The claim's cost and concurrent claims are tested on moto in tests/integration/test_dedupe.py; how a mark found by a
claim is read, on plain data in tests/unit/core/test_sending.py."""

from __future__ import annotations

import io
import time

import pytest

from clay_pipeline.core.sending import Claim
from clay_pipeline.services.dedupe import Deduper
from tests.fakes.state_table import FakeStateStore

pytestmark = pytest.mark.unit


@pytest.fixture
def store() -> FakeStateStore:
    return FakeStateStore()


def test_dedupe_claim_confirm_release(store: FakeStateStore) -> None:
    dedupe = Deduper(store, days=30)
    assert dedupe.claim("ld_1") is Claim.CLAIMED
    assert dedupe.claim("ld_1") is Claim.IN_FLIGHT  # another sender holds it
    dedupe.confirm("ld_1")
    assert dedupe.claim("ld_1") is Claim.ALREADY_SENT
    mark = store.get("dedupe#ld_1")
    assert mark is not None
    assert mark["expires_at"] - time.time() > 29 * 86_400
    dedupe.release("ld_1")
    assert dedupe.claim("ld_1") is Claim.CLAIMED


def test_a_lapsed_claim_its_batch_record_lists_is_already_sent_and_confirmed(store: FakeStateStore) -> None:
    # GIVEN a lead claimed by a batch that ended and whose record lists it
    dedupe = Deduper(store, days=30, confirmed_by=lambda batch, lead: (batch, lead) == ("b1", "ld_sent"))
    dedupe.claim("ld_sent", {"batch": "b1"}, lease_seconds=-5)
    # WHEN it comes again (a repeat submission) THEN it is skipped, and the mark now says so by itself
    assert dedupe.claim("ld_sent") is Claim.ALREADY_SENT
    mark = store.get("dedupe#ld_sent")
    assert mark is not None and mark["status"] == "sent"
    assert Deduper(store, days=30).claim("ld_sent") is Claim.ALREADY_SENT  # no batch record needed now


def test_a_lapsed_claim_no_batch_record_lists_is_held_as_an_unknown_outcome(
    store: FakeStateStore, captured_logs: io.StringIO
) -> None:
    # GIVEN a sender that claimed the lead and died before its batch ended (no batch record)
    dedupe = Deduper(store, days=30, hold_seconds=3600, confirmed_by=lambda batch, lead: False)
    dedupe.claim("ld_crashed", {"batch": "b9"}, lease_seconds=-5)
    # THEN whether Clay got the row is unknown: the lead is held, as after a lost answer, and said so
    assert dedupe.claim("ld_crashed") is Claim.HELD
    assert 3590 <= dedupe.seconds_held("ld_crashed") <= 3600
    assert "ended without recording it" in captured_logs.getvalue()


def test_lost_answer_holds_the_lead_until_the_mark_expires(store: FakeStateStore) -> None:
    # GIVEN a send whose answer was lost (Clay may or may not have the row)
    dedupe = Deduper(store, days=30)
    assert dedupe.claim("ld_lost") is Claim.CLAIMED
    assert dedupe.hold("ld_lost", 3600) is True
    # THEN every instance holds the lead back for the hold, and says for how long
    assert Deduper(store, days=30).claim("ld_lost") is Claim.HELD
    assert 3590 <= dedupe.seconds_held("ld_lost") <= 3600
    mark = store.get("dedupe#ld_lost")
    assert mark is not None and mark["status"] == "unknown"
    # WHEN the hold has passed (expires_at in the past, before TTL deletes it) THEN the lead may be sent again
    store.update("dedupe#ld_lost", {"expires_at": int(time.time()) - 1})
    assert dedupe.seconds_held("ld_lost") == 0
    assert dedupe.claim("ld_lost") is Claim.CLAIMED


def test_dedupe_off_writes_nothing(store: FakeStateStore) -> None:
    dedupe = Deduper(store, days=0)
    assert dedupe.claim("ld_1") is Claim.CLAIMED
    assert dedupe.claim("ld_1") is Claim.CLAIMED
    assert dedupe.hold("ld_1", 3600) is False  # no hold either: dedupe off means every receive sends
    assert store.get("dedupe#ld_1") is None
