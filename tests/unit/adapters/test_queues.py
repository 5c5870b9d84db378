"""adapters/queues.py on plain data: the JSON text a message becomes before SQS sees it."""

from __future__ import annotations

import json

import pytest

from clay_pipeline.adapters.queues import message_body

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("text", ["\uffff", "\ufffe", "a\ud7ffb\ue000", "\U0001f600 ok"])
def test_characters_sqs_refuses_are_escaped_and_come_back_intact(text: str) -> None:
    # GIVEN a lead with characters outside what SQS message bodies may carry (U+FFFE, U+FFFF)
    # WHEN written as the body Queue.send and Queue.send_batch give SQS
    bodies = [message_body({"email": "a@b.co", "notes": text}), message_body({"email": "c@d.co", "notes": text})]
    # THEN the bodies hold only characters SQS allows, and decode to the text sent
    assert len(bodies) == 2
    assert not any(char in body for body in bodies for char in "\ufffe\uffff")
    assert [json.loads(body)["notes"] for body in bodies] == [text, text]
