"""Callback acceptance on plain data: what the lead's item, as a refused claim met it, says about a version.

The conditional write itself (and that these readings follow from what DynamoDB returns) is tested against
moto in tests/integration/test_callback_claims.py.
"""

from __future__ import annotations

import pytest

from clay_pipeline.core.callback_acceptance import (
    ACCEPTANCE_OF_REFUSAL,
    KEPT_VERSIONS,
    TRIM_SLACK,
    Acceptance,
    Refusal,
    callback_version,
    claimed_at,
    read_refusal,
    versions_to_trim,
)

pytestmark = pytest.mark.unit

VERSION = "a" * 32
MINE = "2026-12-06T10:00:00.000002+00:00"  # this callback's received_at: what its claim holds
OTHER = "2026-12-06T10:00:00.000001+00:00"  # an identical callback's, received a microsecond before


def test_a_version_among_the_accepted_ones_is_a_duplicate_whatever_its_claim() -> None:
    # GIVEN the lead's item lists the version as accepted (an identical re-send), with or without a claim on it
    for pending in (None, OTHER, MINE, 1_800_000_000.0):
        # WHEN the claim is refused THEN it is a duplicate, answered 200 with "duplicate": true
        refusal = read_refusal(["b" * 32, VERSION], pending, VERSION, MINE)
        assert refusal is Refusal.DUPLICATE
        assert ACCEPTANCE_OF_REFUSAL[refusal] is Acceptance.DUPLICATE


def test_a_claim_holding_this_callbacks_received_at_is_its_own_from_a_try_whose_answer_was_lost() -> None:
    refusal = read_refusal([], MINE, VERSION, MINE)
    assert refusal is Refusal.OWN_CLAIM
    assert ACCEPTANCE_OF_REFUSAL[refusal] is Acceptance.ACCEPTED


def test_another_callbacks_claim_is_pending_however_old_and_the_copy_keeps_its_received_at() -> None:
    # GIVEN the version claimed by an identical callback (queued, queueing, or dead before queueing), or by a
    # callback of the code before this one (its claim a lease's end, a number)
    for pending in (OTHER, "2026-01-01T00:00:00+00:00", 1_800_000_000.0):
        refusal = read_refusal(["b" * 32], pending, VERSION, MINE)
        # THEN it is pending: a copy is queued and the answer is a duplicate's
        assert refusal is Refusal.PENDING
        assert ACCEPTANCE_OF_REFUSAL[refusal] is Acceptance.PENDING
    # AND the copy carries the claiming callback's received_at (this one's when the claim holds a number)
    assert claimed_at(OTHER, MINE) == OTHER
    assert claimed_at(1_800_000_000.0, MINE) == MINE


def test_without_a_claim_or_an_accepted_version_only_the_stored_lead_is_newer() -> None:
    # GIVEN a write (save_enrichment or a late callback) meeting an item without a claim on the version
    assert read_refusal(["b" * 32], None, VERSION, MINE) is Refusal.NEWER_STORED
    assert Refusal.NEWER_STORED not in ACCEPTANCE_OF_REFUSAL  # it is claimed by a second write, not answered


def test_the_version_is_the_body_hash_after_the_last_hash_sign() -> None:
    assert callback_version(f"ld_jane#{VERSION}") == VERSION
    assert callback_version(f"ld#with#hashes#{VERSION}") == VERSION


def test_the_accepted_versions_are_trimmed_back_to_the_kept_number_only_past_the_slack() -> None:
    # GIVEN a list one short of the trimming point THEN nothing is trimmed (no extra write)
    assert versions_to_trim(["v"] * (KEPT_VERSIONS + TRIM_SLACK - 1)) == 0
    # WHEN it reaches KEPT_VERSIONS + TRIM_SLACK THEN the oldest are dropped down to KEPT_VERSIONS
    assert versions_to_trim(["v"] * (KEPT_VERSIONS + TRIM_SLACK)) == TRIM_SLACK
    # AND a list that grew further (concurrent completions) is trimmed back to the same size
    assert versions_to_trim(["v"] * (KEPT_VERSIONS + TRIM_SLACK + 3)) == TRIM_SLACK + 3
    assert versions_to_trim([]) == 0
