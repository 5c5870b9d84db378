"""Reading dead letters (clay_pipeline/adapters/dead_letter_queues.py) and selecting and grouping them
(cli/operations/dead_letters.py), without a queue."""

from __future__ import annotations

import json

import pytest

from clay_pipeline.adapters.dead_letter_queues import QUEUES, REDRIVEN, DeadLetterMessage, lead_id_of, queue_pair
from cli.operations.dead_letters import Selection, group_by_reason

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0


def letter(message_id: str, reason: str | None, age: float, detail: str = "", **attributes: str) -> DeadLetterMessage:
    values = {**attributes, **({"reason": reason} if reason else {}), **({"detail": detail} if detail else {})}
    body = json.dumps({"lead_key": f"ld_{message_id}", "lead": {}})
    return DeadLetterMessage(QUEUES["routing"], message_id, f"rh-{message_id}", body, values, NOW - age, 5)


MESSAGES = [
    letter("a", "retries_exhausted", 30 * 3600, "hubspot: throttled_429", source_message_id="src-a"),
    letter("b", "retries_exhausted", 2 * 3600, "slack: server_error_503"),
    letter("c", "permanent_failure", 600, "zapier: rejected_400"),
    letter("d", None, 5 * 86400),
]


def test_selection_by_reason_age_text_and_id() -> None:
    assert [m.message_id for m in Selection().pick(MESSAGES, NOW)] == ["d", "a", "b", "c"]  # oldest first
    assert [m.message_id for m in Selection(reasons=frozenset({"retries_exhausted"})).pick(MESSAGES, NOW)] == ["a", "b"]
    # "the 429s from yesterday": text 429, between 2 days and 1 day old
    yesterday = Selection(text="429", older_than=86400, newer_than=2 * 86400)
    assert [m.message_id for m in yesterday.pick(MESSAGES, NOW)] == ["a"]
    assert [m.message_id for m in Selection(message_ids=frozenset({"src-a"})).pick(MESSAGES, NOW)] == ["a"]
    assert [m.message_id for m in Selection(limit=2).pick(MESSAGES, NOW)] == ["d", "a"]
    assert Selection().everything and not Selection(text="x").everything


def test_groups_by_reason_largest_first_and_names_the_ones_sqs_moved() -> None:
    groups = [group.summary(NOW) for group in group_by_reason(MESSAGES)]
    assert [(g["reason"], g["count"]) for g in groups] == [
        ("retries_exhausted", 2),
        (REDRIVEN, 1),
        ("permanent_failure", 1),
    ]
    assert (groups[0]["oldest_seconds"], groups[0]["newest_seconds"]) == (30 * 3600, 2 * 3600)
    assert groups[0]["example_detail"] == "hubspot: throttled_429"


def test_original_id_lead_and_queue_names() -> None:
    assert MESSAGES[0].original_message_id == "src-a"  # the source queue's id the function recorded
    assert MESSAGES[3].original_message_id == "d"  # moved by SQS: it kept its id
    assert letter("e", "x", 1, original_message_id="first").original_message_id == "first"  # a replay's
    assert MESSAGES[0].lead_id == "ld_a"
    assert lead_id_of('{"email": "Jane@Acme.com"}').startswith("ld_")
    assert lead_id_of("{not json") == lead_id_of("[1]") == ""
    assert queue_pair("RoutingDLQ") is queue_pair("routing") is QUEUES["routing"]
    assert queue_pair("RunPollDLQ") is queue_pair("run-poll") is queue_pair("run_poll") is QUEUES["runpoll"]
    assert QUEUES["runpoll"].source == "RunPollQueue" and not QUEUES["runpoll"].about_leads
    with pytest.raises(ValueError, match="unknown queue"):
        queue_pair("billing")
