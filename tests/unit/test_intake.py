"""POST /leads rules without AWS: key check, body shapes, row validation, queue refusals."""

from __future__ import annotations

import hmac
import json
from typing import Any

import pytest

from clay_pipeline.adapters.queues import QueueSendError
from clay_pipeline.config import IntakeSettings
from clay_pipeline.core import auth
from clay_pipeline.core.errors import Rejected
from clay_pipeline.http_api import answer_to
from clay_pipeline.services.intake import accept_leads, authenticate, enqueue, read_rows, validate_rows

pytestmark = pytest.mark.unit

SETTINGS = IntakeSettings(lead_queue_url="https://sqs.example/queue", intake_max_leads=3, intake_max_body_bytes=2048)
JSON = {"content-type": "application/json"}


class FakeQueue:
    def __init__(self, refuse: set[int] | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.refuse = refuse or set()

    def send_batch(self, messages: list[dict[str, Any]], attempts: int = 3) -> list[int]:
        self.sent.extend(m for i, m in enumerate(messages) if i not in self.refuse)
        return sorted(self.refuse & set(range(len(messages))))


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


@pytest.mark.parametrize(
    "document",
    [{"email": "a@b.co"}, [{"email": "a@b.co"}], {"leads": [{"email": "a@b.co"}]}],
)
def test_one_lead_an_array_or_a_leads_object(document: Any) -> None:
    assert read_rows(SETTINGS, JSON, body(document)) == [{"email": "a@b.co"}]


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b'{"email": ', 400),
        (b"[]", 400),
        (b'{"leads": {"email": "a@b.co"}}', 400),
        (body([{"email": f"{n}@b.co"} for n in range(4)]), 413),
        (body({"email": "a@b.co", "notes": "x" * 3000}), 413),
    ],
)
def test_bad_bodies(raw: bytes, status: int) -> None:
    with pytest.raises(Rejected) as error:
        read_rows(SETTINGS, JSON, raw)
    assert answer_to(error.value).status == status


def test_declared_non_json_is_415() -> None:
    with pytest.raises(Rejected) as error:
        read_rows(SETTINGS, {"content-type": "text/csv"}, b"email\na@b.co")
    assert answer_to(error.value).status == 415


def test_each_row_validated_on_its_own() -> None:
    rows = validate_rows([{"email": "A@B.co"}, "text", {"email": "nope"}, {"first_name": "X"}, {"domain": "b.co"}])
    assert [index for index, _ in rows.valid] == [0, 4]
    assert rows.valid[0][1].email == "a@b.co"
    assert rows.valid[0][1].source == "api"
    assert rows.rejected == [
        {"index": 1, "error": "must be a JSON object, not str"},
        {"index": 2, "error": "email: not a valid email address"},
        {"index": 3, "error": "needs an email, a domain or a linkedin_url"},
    ]


def test_row_source_kept_unless_overridden() -> None:
    assert validate_rows([{"email": "a@b.co", "source": "web_form"}]).valid[0][1].source == "web-form"
    assert validate_rows([{"email": "a@b.co", "source": "web-form"}], source="csv-import").valid[0][1].source == (
        "csv-import"
    )


def test_refused_rows_are_reported_by_their_input_index() -> None:
    rows = validate_rows([{"first_name": "no id"}, {"email": "a@b.co"}, {"email": "c@d.co"}])
    queue = FakeQueue(refuse={1})
    assert enqueue(queue, rows) == [{"index": 2, "error": "could not be queued; send this lead again"}]
    assert [m["email"] for m in queue.sent] == ["a@b.co"]


def test_accept_counts_and_sorts_rejections() -> None:
    queue = FakeQueue()
    result = accept_leads(SETTINGS, queue, JSON, body([{"email": "a@b.co"}, {"x": 1}, {"domain": "c.co"}]))
    assert result == {"accepted": 2, "rejected": [{"index": 1, "error": "needs an email, a domain or a linkedin_url"}]}
    assert all(m["lead_id"].startswith("ld_") for m in queue.sent)


def test_nothing_valid_is_400_and_nothing_queued_is_an_outage() -> None:
    with pytest.raises(Rejected) as error:
        accept_leads(SETTINGS, FakeQueue(), JSON, body([{"x": 1}]))
    assert answer_to(error.value).status == 400
    with pytest.raises(QueueSendError):
        accept_leads(SETTINGS, FakeQueue(refuse={0}), JSON, body({"email": "a@b.co"}))


KEY_ONE = "key-one-0123456789abcdef0123456789"


def test_api_key_checked_against_every_key_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTAKE_API_KEYS", f"{KEY_ONE}, key-two-{'2' * 32},key-three-{'3' * 32}")
    calls: list[bytes] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(b)
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    authenticate({"x-api-key": KEY_ONE})
    assert len(calls) == 3  # a match on the first key still compares the rest
    for wrong in ("", KEY_ONE[:-1], KEY_ONE.upper(), f"{KEY_ONE} "):
        with pytest.raises(Rejected) as error:
            authenticate({"x-api-key": wrong})
        assert answer_to(error.value).status == 401
