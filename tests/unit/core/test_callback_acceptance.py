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
    read_refusal,
    versions_to_trim,
)

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0
VERSION = "a" * 32
MY_LEASE = NOW + 20


def test_a_version_among_the_accepted_ones_is_a_duplicate_whatever_its_lease() -> None:
    # GIVEN the lead's item lists the version as accepted (an identical re-send), with or without a claim on it
    for pending in (None, NOW - 5, NOW + 5, MY_LEASE):
        # WHEN the claim is refused THEN it is a duplicate, answered 200 with "duplicate": true
        refusal = read_refusal(["b" * 32, VERSION], pending, VERSION, MY_LEASE, NOW)
        assert refusal is Refusal.DUPLICATE
        assert ACCEPTANCE_OF_REFUSAL[refusal] is Acceptance.DUPLICATE


def test_a_claim_carrying_this_very_lease_is_the_invocations_own() -> None:
    # GIVEN a claim written by this invocation's earlier try, whose answer was lost (same lease value)
    refusal = read_refusal([], MY_LEASE, VERSION, MY_LEASE, NOW)
    # THEN the retry recognises it: accepted, not in progress
    assert refusal is Refusal.OWN_CLAIM
    assert ACCEPTANCE_OF_REFUSAL[refusal] is Acceptance.ACCEPTED


def test_another_invocations_live_claim_is_in_progress() -> None:
    # GIVEN an identical callback's claim whose lease has not ended (its own lease, not ours)
    for pending in (NOW, NOW + 1, MY_LEASE + 1):
        refusal = read_refusal([], pending, VERSION, MY_LEASE, NOW)
        # THEN this one waits for it: in progress
        assert refusal is Refusal.IN_PROGRESS
        assert ACCEPTANCE_OF_REFUSAL[refusal] is Acceptance.IN_PROGRESS


def test_without_a_live_claim_or_an_accepted_copy_only_a_newer_stored_lead_refused_it() -> None:
    # GIVEN no claim on the version, or one whose lease lapsed (its invocation died), and the version not accepted
    for pending in (None, 0.0, NOW - 0.001):
        # THEN the refusal came from the newer callback stored: claim this one without replacing it
        assert read_refusal(["b" * 32], pending, VERSION, MY_LEASE, NOW) is Refusal.NEWER_STORED
    assert Refusal.NEWER_STORED not in ACCEPTANCE_OF_REFUSAL  # a second write decides it


def test_a_lease_of_zero_is_never_mistaken_for_an_existing_claim() -> None:
    # GIVEN a write with lease 0 (save_enrichment: no invocation holds it) meeting an item without a claim
    # THEN the refusal is not read as its own claim
    assert read_refusal([], None, VERSION, 0, NOW) is Refusal.NEWER_STORED


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
