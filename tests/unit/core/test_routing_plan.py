"""core/routing_plan.py: the rules' choice, pause filtering, intents, held carry-over, the peak score, what is owed,
and the unknown-outcome marks, each on plain data."""

from __future__ import annotations

import json
from typing import Any

import pytest

from clay_pipeline.core.deliveries import DELIVERED, DeliveryResult, Status
from clay_pipeline.core.policies import Busy, Delivered, LeadHistory, Lease, Owed
from clay_pipeline.core.routing_message import RoutingMessage, parse_message
from clay_pipeline.core.routing_plan import (
    LAPSED_REASON,
    Attempt,
    PlanContext,
    RoutingConfig,
    held_to_deliver,
    with_carried,
)
from clay_pipeline.core.rules import Decision
from tests.integration.test_router import lead
from tests.unit.core.test_routing_message import NOW

pytestmark = pytest.mark.unit

ALL = frozenset({"slack", "outreach", "hubspot", "nurture", "zapier", "leads_table"})
NOW_S = 1_800_000_000.0


def config(rules: str = "", policies: str = "", required: str = "", unknown: str = "") -> RoutingConfig:
    return RoutingConfig.from_settings(rules, policies, required, unknown, 30)


def routed(lead_fields: dict[str, Any], received_at: str = "2026-01-01T00:00:00+00:00") -> RoutingMessage:
    return parse_message(json.dumps({"lead": lead_fields, "received_at": received_at}), NOW)


def hash_of(name: str) -> str:
    return f"hash-{name}"


def lease(delivered: dict[str, Delivered] | None = None, **fields: Any) -> Lease:
    history = LeadHistory(delivered or {}, fields.pop("routed_received_at", ""))
    return Lease("ld", "me", history, fields.pop("callback_id", ""), **fields)


def planned(rules: RoutingConfig, message: RoutingMessage, claim: Lease, **context: Any) -> tuple[Attempt, Any]:
    enabled, paused = context.pop("enabled", ALL), context.pop("paused", frozenset())
    carried = context.pop("carried", ())
    choice = rules.choose(message, enabled, paused, carried)
    marked = rules.intents(choice, hash_of, int(NOW_S))
    return rules.plan(choice, claim, marked, PlanContext(enabled, paused, hash_of, NOW_S, carried))


# -- choose ---------------------------------------------------------------------------------------------
def test_a_hot_lead_chooses_its_destinations_but_only_those_that_are_on() -> None:
    # GIVEN a 95 lead with an email and HubSpot off (no token)
    choice = config().choose(routed(lead("l", 95)), ALL - {"hubspot"}, frozenset())
    # THEN the rules chose four destinations; the three that are on are its deliveries, claimed
    assert choice.decision.destinations == ("slack", "outreach", "hubspot", "zapier")
    assert choice.deliveries == ("slack", "outreach", "zapier")
    assert choice.needs_claim and choice.claim is None


def test_a_lead_whose_every_delivery_is_paused_needs_no_claim_and_holds_them_all() -> None:
    choice = config().choose(routed(lead("l", 60)), ALL, frozenset({"nurture", "zapier"}))
    assert not choice.needs_claim
    assert choice.held == ("nurture", "zapier")


def test_an_incomplete_row_delivers_nothing_not_even_what_a_pause_carried() -> None:
    message = routed(lead("l", None, job_title="VP Sales"))
    choice = config(required="icp_score").choose(message, ALL, frozenset(), carried=("zapier",))
    assert choice.deliveries == () and choice.decision.incomplete


def test_what_a_pause_held_is_added_to_the_rules_choice_once() -> None:
    # GIVEN a cold lead (no rule matches) that a pause held Zapier for
    assert with_carried(Decision(()), ("zapier",)).destinations == ("zapier",)
    assert with_carried(Decision(("zapier",)), ("zapier",)).destinations == ("zapier",)


# -- intents --------------------------------------------------------------------------------------------
def test_intents_are_written_only_for_hold_destinations_that_are_not_paused() -> None:
    # GIVEN a hot lead, outreach paused WHEN the claim's intents are worked out
    rules = config()
    choice = rules.choose(routed(lead("l", 95)), ALL, frozenset({"outreach"}))
    intents = rules.intents(choice, hash_of, 100)
    # THEN Zapier (hold) has one; Slack and HubSpot resend, outreach is paused
    assert intents == {"zapier": Delivered(100, "hash-zapier", 95.0)}


# -- plan -----------------------------------------------------------------------------------------------
def test_a_newer_callback_already_routed_supersedes_this_one() -> None:
    claim = lease(routed_received_at="2026-01-02T00:00:00+00:00")
    attempt, unrecorded = planned(config(), routed(lead("l", 95)), claim)
    assert attempt.superseded and attempt.pending == () and unrecorded == {}


def test_a_first_callback_owes_every_chosen_destination() -> None:
    attempt, unrecorded = planned(config(), routed(lead("l", 85)), lease())
    assert attempt.pending == ("outreach", "hubspot", "zapier")
    assert attempt.intended == frozenset({"outreach", "zapier"}) == attempt.marked
    assert unrecorded == {}  # the claim wrote them


def test_a_lower_score_is_re_evaluated_at_the_peak_so_the_lower_band_is_withheld() -> None:
    # GIVEN a lead delivered at 85 (outreach, HubSpot, Zapier) now scored 60 (nurture's band)
    delivered = {name: Delivered(int(NOW_S) - 60, f"old-{name}", 85.0) for name in ("outreach", "hubspot", "zapier")}
    attempt, _ = planned(config(), routed(lead("l", 60)), lease(delivered))
    # THEN nurture is withheld: at 85 the rules would not have chosen it
    assert attempt.owed == {"nurture": Owed.WITHHELD, "zapier": Owed.ALREADY_DELIVERED}
    assert attempt.pending == ()


def test_a_destination_a_pause_held_is_delivered_even_when_the_rules_no_longer_choose_it() -> None:
    # GIVEN HubSpot held for the lead by a pause, and a callback now scored 60 (HubSpot not chosen)
    claim = lease(held={"hubspot": "2026-01-01T00:00:00+00:00"})
    attempt, _ = planned(config(), routed(lead("l", 60)), claim)
    # THEN HubSpot is carried over and owed, never withheld
    assert "hubspot" in attempt.decision.destinations
    assert attempt.owed["hubspot"] is Owed.SEND


def test_a_held_hold_delivery_the_claim_did_not_know_gets_its_intent_recorded_before_sending() -> None:
    # GIVEN outreach held for the lead by a pause, and a 60 callback (the rules do not choose outreach, so the
    # claim wrote no intent for it)
    claim = lease(held={"outreach": "2026-01-01T00:00:00+00:00"})
    attempt, unrecorded = planned(config(), routed(lead("l", 60)), claim)
    # THEN outreach (hold) is intended and its intent is still to be written (one more write)
    assert "outreach" in attempt.intended
    assert set(unrecorded) == {"outreach"}


def test_a_hold_delivery_whose_outcome_is_unknown_is_not_owed_again() -> None:
    claim = lease(unknown={"outreach": {"at": 1, "hash": "h", "reason": "read_timeout"}})
    attempt, _ = planned(config(), routed(lead("l", 85)), claim)
    assert attempt.owed["outreach"] is Owed.UNKNOWN
    assert "outreach" not in attempt.pending


def test_a_paused_destination_is_owed_but_held() -> None:
    attempt, _ = planned(config(), routed(lead("l", 85)), lease(), paused=frozenset({"hubspot"}))
    assert attempt.held == ("hubspot",)
    assert "hubspot" not in attempt.pending


def test_a_busy_lease_is_no_lease() -> None:
    assert Attempt(routed(lead("l", 85)), Decision(()), (), Busy(5)).lease is None


# -- idempotency, unknown marks -------------------------------------------------------------------------
def test_the_idempotency_basis_is_the_lead_for_once_per_lead_and_the_payload_for_on_change() -> None:
    attempt, _ = planned(config(), routed(lead("l", 95)), lease())
    assert config().idempotency_basis(attempt, "outreach") == "l"  # the message's lead key
    assert config().idempotency_basis(attempt, "hubspot") == "l#hash-hubspot"


def test_a_send_whose_answer_was_lost_is_marked_unknown_and_its_intent_done() -> None:
    rules = config()
    attempt, _ = planned(rules, routed(lead("l", 85)), lease())
    sent = {"outreach": DeliveryResult(Status.UNKNOWN, "read_timeout"), "zapier": DELIVERED}
    marks = rules.unknown_marks(attempt, attempt.lease, sent, 500)  # type: ignore[arg-type]
    assert marks.unknown == {"outreach": {"at": 500, "hash": "hash-outreach", "score": 85.0, "reason": "read_timeout"}}
    assert sorted(marks.intents_done) == ["outreach", "zapier"]
    assert marks.newly_unknown == {"outreach": "read_timeout"}


def test_a_send_that_raised_keeps_its_intent_for_the_next_claim() -> None:
    rules = config()
    attempt, _ = planned(rules, routed(lead("l", 85)), lease())
    marks = rules.unknown_marks(attempt, attempt.lease, {"zapier": DELIVERED}, 500)  # type: ignore[arg-type]
    assert marks.intents_done == ["zapier"] and marks.unknown == {}


def test_an_intent_an_ended_invocation_left_is_unknown_unless_the_ledger_shows_nothing_was_owed() -> None:
    rules = config()
    # GIVEN a lapsed outreach intent (nothing delivered before) and a lapsed zapier one (delivered before)
    intent = {"at": 1, "hash": "h", "score": 85}
    claim = lease({"zapier": Delivered(1, "h", 85.0)}, lapsed={"outreach": intent, "zapier": intent})
    attempt, _ = planned(rules, routed(lead("l", 85)), claim)
    marks = rules.unknown_marks(attempt, claim, {}, 500)
    # THEN outreach may have gone out: unknown; Zapier (once per lead, delivered) could not have
    assert marks.unknown["outreach"] == {**intent, "reason": LAPSED_REASON}
    assert "zapier" not in marks.unknown


def test_a_new_payload_delivered_settles_an_older_unknown_one() -> None:
    rules = config(policies="zapier=on_change")
    claim = lease(unknown={"zapier": {"at": 1, "hash": "older", "reason": "read_timeout"}})
    attempt, _ = planned(rules, routed(lead("l", 85)), claim)
    marks = rules.unknown_marks(attempt, claim, {"zapier": DELIVERED}, 500)
    assert marks.unknown["zapier"] is None and marks.newly_unknown == {}


# -- held after the fact --------------------------------------------------------------------------------
def test_a_callback_choosing_nothing_delivers_what_a_pause_held_once_the_destination_is_back() -> None:
    choice = config().choose(routed(lead("l", 20, email=None)), ALL, frozenset())
    held = {"zapier": "t", "outreach": "t"}
    assert held_to_deliver(held, choice, ALL, frozenset({"outreach"})) == ("zapier",)
    incomplete = config(required="icp_score").choose(routed(lead("l", None)), ALL, frozenset())
    assert held_to_deliver(held, incomplete, ALL, frozenset()) == ()
