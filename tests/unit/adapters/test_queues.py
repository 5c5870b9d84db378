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


def test_exactly_the_characters_sqs_refuses_are_escaped() -> None:
    # GIVEN every code point of the basic plane and astral ones, and SQS's allowed set as its documentation writes it
    # (#x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF)
    def allowed(code: int) -> bool:
        return code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or code >= 0x10000

    codes = [*range(0x10000), 0x10000, 0x1F600, 0x10FFFF]  # the astral planes are allowed throughout
    every = ".".join(map(chr, codes))  # apart: escaped, a high then a low surrogate would read as one pair
    # WHEN they are written as a message body
    body = message_body({"text": every})
    # THEN every refused character, and only those, became a \u escape (the others stay themselves, but for
    # what JSON itself escapes: the quote, the backslash and control characters)
    assert json.loads(body)["text"] == every
    written = set(body)
    assert written.isdisjoint(chr(code) for code in codes if not allowed(code))
    assert {chr(code) for code in codes if code >= 0x20 and allowed(code)} - set('"\\') <= written
