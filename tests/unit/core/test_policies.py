"""Delivery policies: what a callback still owes each destination, given the lead's ledger."""

from __future__ import annotations

import pytest

from clay_pipeline.core.policies import Delivered, LeadHistory, Owed, newer, payload_hash, peak_score, plan
from clay_pipeline.core.rules import DEFAULT_POLICIES, ON_CHANGE, RuleSet, default_rules

pytestmark = pytest.mark.unit

NOW = 1_800_000_000
DAY = 86400
RULES = RuleSet(default_rules())


def delivered(payload_hash: str = "h", score: float | None = 85, days_ago: float = 0) -> Delivered:
    return Delivered(int(NOW - days_ago * DAY), payload_hash, score)


def owed(
    chosen: tuple[str, ...],
    remembered: dict[str, Delivered],
    hashes: dict[str, str] | None = None,
    at_peak: frozenset[str] | None = None,
) -> dict[str, Owed]:
    return plan(chosen, DEFAULT_POLICIES, hashes or dict.fromkeys(chosen, "h"), remembered, at_peak)


# ------------------------------------------------------------------------------------- once_per_lead
def test_a_first_callback_owes_every_chosen_destination() -> None:
    assert owed(("outreach", "hubspot", "zapier"), {}) == dict.fromkeys(("outreach", "hubspot", "zapier"), Owed.SEND)


def test_once_per_lead_destinations_are_not_owed_again_whatever_the_payload() -> None:
    # GIVEN outreach, Zapier and Slack delivered with another payload WHEN a changed callback is planned
    remembered = {name: delivered("old") for name in ("outreach", "zapier", "slack")}
    result = owed(
        ("slack", "outreach", "zapier"), remembered, hashes=dict.fromkeys(("slack", "outreach", "zapier"), "new")
    )
    # THEN none of them is owed
    assert set(result.values()) == {Owed.ALREADY_DELIVERED}


# ------------------------------------------------------------------------------------- on_change
def test_on_change_is_owed_only_when_the_mapped_payload_changed() -> None:
    remembered = {"hubspot": delivered("same")}
    assert owed(("hubspot",), remembered, hashes={"hubspot": "same"}) == {"hubspot": Owed.UNCHANGED}
    assert owed(("hubspot",), remembered, hashes={"hubspot": "changed"}) == {"hubspot": Owed.SEND}


def test_a_changed_policy_applies() -> None:
    # GIVEN Zapier configured on_change and a delivered Zapier payload
    policies = {**DEFAULT_POLICIES, "zapier": ON_CHANGE}
    remembered = {"zapier": delivered("old")}
    # THEN a changed payload is owed again, the same one is not
    assert plan(("zapier",), policies, {"zapier": "new"}, remembered, None) == {"zapier": Owed.SEND}
    assert plan(("zapier",), policies, {"zapier": "old"}, remembered, None) == {"zapier": Owed.UNCHANGED}


# ------------------------------------------------------------------------------------- bands
def test_a_destination_chosen_only_because_the_score_dropped_is_withheld() -> None:
    # GIVEN outreach delivered at 85, and now the lead scores 60: nurture is chosen, outreach is not
    lead = {"email": "a@x.com", "icp_score": 60}
    chosen = RULES.evaluate(lead).destinations
    at_peak = frozenset(RULES.evaluate({**lead, "icp_score": 85}).destinations)
    remembered = {"outreach": delivered(score=85), "zapier": delivered(score=85), "hubspot": delivered(score=85)}
    # THEN nurture is withheld and Zapier is already delivered
    assert owed(chosen, remembered, at_peak=at_peak) == {"nurture": Owed.WITHHELD, "zapier": Owed.ALREADY_DELIVERED}


def test_an_upgrade_owes_only_what_the_lead_newly_qualifies_for() -> None:
    lead = {"email": "a@x.com", "icp_score": 92}
    remembered = {"outreach": delivered(score=85), "zapier": delivered(score=85), "hubspot": delivered("h", 85)}
    result = owed(RULES.evaluate(lead).destinations, remembered, hashes=dict.fromkeys(DEFAULT_POLICIES, "h2"))
    assert result == {
        "slack": Owed.SEND,
        "outreach": Owed.ALREADY_DELIVERED,
        "hubspot": Owed.SEND,  # the score it shows changed
        "zapier": Owed.ALREADY_DELIVERED,
    }


def test_peak_score_is_the_highest_score_a_remembered_delivery_was_made_at() -> None:
    assert peak_score({"a": delivered(score=60), "b": delivered(score=85), "c": delivered(score=None)}) == 85
    assert peak_score({"c": delivered(score=None)}) is None
    assert peak_score({}) is None


# ------------------------------------------------------------------------------------- memory and order
def test_a_delivery_older_than_the_mark_days_is_forgotten() -> None:
    history = LeadHistory({"outreach": delivered(days_ago=31), "zapier": delivered(days_ago=29)})
    assert set(history.remembered(NOW, mark_days=30)) == {"zapier"}


@pytest.mark.parametrize(
    ("routed", "received", "superseded"),
    [
        ("2026-01-01T00:05:00+00:00", "2026-01-01T00:01:00+00:00", True),
        ("2026-01-01T00:05:00+00:00", "2026-01-01T00:05:00+00:00", False),  # a redelivery of the same callback
        ("2026-01-01T00:05:00+00:00", "2026-01-01T00:06:00.5+00:00", False),
        ("2026-01-01T00:05:00Z", "2026-01-01T00:04:59.999999+00:00", True),
        ("", "2026-01-01T00:01:00+00:00", False),
    ],
)
def test_an_older_callback_than_the_newest_routed_one_is_superseded(
    routed: str, received: str, superseded: bool
) -> None:
    assert LeadHistory({}, routed).supersedes(received) is superseded


def test_newer_compares_instants_not_text() -> None:
    assert newer("2026-01-01T00:00:01+00:00", "2026-01-01T01:00:00+02:00")  # 00:00:01 UTC is after 23:00 UTC
    assert not newer("2026-01-01T00:00:00+00:00", "2026-01-01T00:00:00Z")


def test_ledger_entries_round_trip_and_old_bare_timestamps_are_read() -> None:
    entry = delivered("abc", 91.5)
    assert Delivered.from_value(entry.to_value()) == entry
    assert Delivered.from_value(NOW) == Delivered(NOW, "", None)


def test_payload_hash_ignores_key_order_but_not_values() -> None:
    assert payload_hash({"a": 1, "b": "x"}) == payload_hash({"b": "x", "a": 1})
    assert payload_hash({"a": 1}) != payload_hash({"a": 2})


def test_newer_takes_a_naive_instant_as_utc_and_never_raises() -> None:
    # (a hand-edited or replayed message: naive against aware raised TypeError, a year past 9999 OverflowError)
    assert newer("2026-01-01T00:00:01", "2026-01-01T00:00:00+00:00")
    assert not newer("2026-01-01T00:00:00+00:00", "2026-01-01T00:00:01")
    assert newer("9999-12-31T23:59:59-23:59", "2026-01-01T00:00:00+00:00")  # not a moment: compared as text


# ------------------------------------------------------------------------------------- unknown outcomes
def test_an_unknown_outcome_is_not_owed_again_once_per_lead_whatever_the_payload() -> None:
    lost = {"outreach": delivered("old")}
    result = plan(("outreach",), DEFAULT_POLICIES, {"outreach": "new"}, {}, None, lost)
    assert result == {"outreach": Owed.UNKNOWN}


def test_an_unknown_on_change_delivery_blocks_only_its_own_payload() -> None:
    policies = {**DEFAULT_POLICIES, "zapier": ON_CHANGE}
    lost = {"zapier": delivered("sent")}
    assert plan(("zapier",), policies, {"zapier": "sent"}, {}, None, lost) == {"zapier": Owed.UNKNOWN}
    assert plan(("zapier",), policies, {"zapier": "changed"}, {}, None, lost) == {"zapier": Owed.SEND}


def test_a_delivery_recorded_after_an_unknown_one_wins() -> None:
    # GIVEN outreach both delivered (settled, or a late write) and marked unknown THEN it is delivered
    result = plan(
        ("outreach",), DEFAULT_POLICIES, {"outreach": "h"}, {"outreach": delivered()}, None, {"outreach": delivered()}
    )
    assert result == {"outreach": Owed.ALREADY_DELIVERED}
