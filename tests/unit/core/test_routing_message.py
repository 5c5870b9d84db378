"""core/routing_message.py: reading a RoutingQueue message, and which messages of a batch are routed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from clay_pipeline.core.outcomes import DeadLetter
from clay_pipeline.core.routing_message import newest_per_lead, parse_message

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def body(lead: Any, **fields: Any) -> str:
    return json.dumps({"lead": lead, **fields})


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{not json", "malformed_json"),
        (json.dumps(["a list"]), "not_routing_message"),
        (json.dumps({"lead": "x"}), "not_routing_message"),
        (body({"first_name": "Nobody"}), "invalid_lead"),
    ],
)
def test_a_message_that_can_never_be_routed_is_a_dead_letter_with_its_reason(text: str, reason: str) -> None:
    # GIVEN a body that is not a routing message WHEN read THEN DeadLetter says why (no input echoed)
    with pytest.raises(DeadLetter) as raised:
        parse_message(text, NOW)
    assert raised.value.reason == reason
    assert raised.value.detail


def test_a_lead_without_a_score_is_scored_and_tiered_and_what_clay_sent_is_kept_apart() -> None:
    # GIVEN a Director at an 800-person IT company with an email, and no score from Clay
    lead = {"lead_id": "l1", "email": "li@initech.com", "job_title": "Director", "industry": "Software"}
    lead |= {"employee_count": 800}
    # WHEN read
    message = parse_message(body(lead, lead_key="k1", callback_id="c1", received_at="2026-01-01T00:00:00Z"), NOW)
    # THEN the formula's score and tier are filled in, and `sent` names only what Clay sent
    assert (message.lead["icp_score"], message.lead["tier"]) == (85, "A")
    assert message.score == 85.0
    assert "icp_score" not in message.sent and "tier" not in message.sent
    assert (message.lead_key, message.callback_id, message.received_at) == ("k1", "c1", "2026-01-01T00:00:00Z")


def test_a_message_without_its_keys_falls_back_to_the_lead_id_and_the_clock() -> None:
    # GIVEN only a lead WHEN read THEN the lead key and callback id are its lead_id, received_at is `now`
    message = parse_message(body({"lead_id": "l2", "email": "a@b.com", "icp_score": 50}), NOW)
    assert (message.lead_key, message.callback_id, message.received_at) == ("l2", "l2", NOW.isoformat())


def message(key: str, received_at: str) -> Any:
    return parse_message(body({"lead_id": key, "email": f"{key}@x.com", "icp_score": 50}, received_at=received_at), NOW)


def test_only_the_newest_callback_of_each_lead_is_routed_whatever_the_batch_order() -> None:
    # GIVEN two callbacks of lead a (the newer first) and one of lead b
    batch = [
        ("m1", message("a", "2026-01-01T00:02:00Z")),
        ("m2", message("b", "2026-01-01T00:00:00Z")),
        ("m3", message("a", "2026-01-01T00:01:00Z")),
    ]
    # WHEN selected THEN a's newer and b's are routed, in batch order; a's older is superseded
    selection = newest_per_lead(batch)
    assert list(selection.newest) == ["m1", "m2"]
    assert list(selection.superseded) == ["m3"]
    assert selection.failed == {}


def test_of_two_callbacks_received_at_the_same_moment_the_later_in_the_batch_is_routed() -> None:
    selection = newest_per_lead(
        [("m1", message("a", "2026-01-01T00:00:00Z")), ("m2", message("a", "2026-01-01T00:00:00Z"))]
    )
    assert (list(selection.newest), list(selection.superseded)) == (["m2"], ["m1"])


def test_a_received_at_that_cannot_be_compared_fails_only_its_own_record() -> None:
    # GIVEN a second callback of lead a whose received_at breaks the comparison (None, not text)
    odd = message("a", "2026-01-01T00:00:00Z")
    broken = type(odd)(odd.callback_id, odd.lead_key, None, odd.lead, odd.sent)  # type: ignore[arg-type]
    # WHEN selected THEN that record is kept aside with the error; the first callback is still routed
    selection = newest_per_lead([("m1", odd), ("m2", broken)])
    assert list(selection.newest) == ["m1"]
    assert list(selection.failed) == ["m2"]
