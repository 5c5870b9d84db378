"""Intake reliability: hypothesis fuzzing of POST /leads with bodies, headers, encodings and sizes.

Whatever a caller sends, the intake answers with a JSON body and never a 5xx: 5xx is kept for
a failing SQS, so a caller's retry logic can trust it.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from clay_pipeline.core.json_text import dump_json
from clay_pipeline.core.leads import Lead
from local.apigw import http_event
from tests.conftest import LambdaContextStub
from tests.reliability import hostile

pytestmark = pytest.mark.integration

KEY = "reliability-intake-key-0123456789"
MAX_LEADS = 5  # small, so the fuzzer reaches the too-many-leads refusal
MAX_BODY_BYTES = 2048  # the smallest limit the settings allow, so oversize bodies are cheap to make

json_values = hostile.json_values(text_size=30, key_size=10, max_leaves=10)
lead_like = st.fixed_dictionaries(
    {},
    optional={
        "lead_id": st.text(max_size=20) | st.integers(),
        "email": st.text(max_size=30) | st.sampled_from(["a@b.co", "Jane.Doe@Acme.com", "@", "x@y"]),
        "domain": st.text(max_size=20) | st.just("acme.com"),
        "first_name": st.text(max_size=12) | st.integers(),
        "last_name": st.text(max_size=12) | st.none(),
        "linkedin_url": st.text(max_size=30) | st.just("https://www.linkedin.com/in/jane"),
        "source": st.text(max_size=12) | st.sampled_from(["web-form", "crm-event", "csv-import", "api"]),
        "submitted_at": st.text(max_size=25) | st.integers(),
    },
).flatmap(
    lambda base: st.dictionaries(st.text(max_size=10), json_values, max_size=3).map(lambda extra: {**extra, **base})
)
documents = (
    json_values
    | lead_like
    | st.lists(lead_like | json_values, max_size=MAX_LEADS + 3)
    | st.lists(lead_like, max_size=MAX_LEADS + 3).map(lambda rows: {"leads": rows})
    | json_values.map(lambda value: {"leads": value})
)
bodies = (
    st.binary(max_size=400)
    | documents.map(lambda value: json.dumps(value).encode())
    | documents.map(lambda value: json.dumps(value, ensure_ascii=False).encode("utf-16"))
    | st.integers(MAX_BODY_BYTES - 10, MAX_BODY_BYTES + 200).map(lambda size: b'{"email": "' + b"a" * size + b'"}')
)
content_types = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "application/vnd.api+json",
        "text/json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/octet-stream",
        "",
    ]
)
# Mostly the right key, so the fuzzer gets past authentication to the body checks.
api_keys = st.sampled_from([KEY] * 12 + [None, "", "wrong", KEY.upper(), f"{KEY} ", KEY[:-1]]) | st.text(max_size=20)
extra_headers = st.dictionaries(
    st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=15), st.text(max_size=30), max_size=3
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=bodies,
    content_type=content_types,
    api_key=api_keys,
    headers=extra_headers,
    encoding=st.sampled_from(["text", "base64", "broken-base64"]),
)
def test_fuzzed_intake_requests_never_5xx_and_always_answer_json(
    load_function: Any,
    body: bytes,
    content_type: str | None,
    api_key: str | None,
    headers: dict[str, str],
    encoding: str,
) -> None:
    # GIVEN a cold intake with a small row and size limit
    app = load_function(
        "IntakeFunction",
        INTAKE_API_KEYS=f"previous-key-abcdefghijklmnopqrstuvw,{KEY}",
        INTAKE_MAX_LEADS=str(MAX_LEADS),
        INTAKE_MAX_BODY_BYTES=str(MAX_BODY_BYTES),
    )
    sent = dict(headers)
    if content_type is not None:
        sent["content-type"] = content_type
    if api_key is not None:
        sent["x-api-key"] = api_key
    request = http_event("POST", "/leads", body, sent)
    if encoding == "base64":
        request["body"], request["isBase64Encoded"] = base64.b64encode(body).decode(), True
    elif encoding == "broken-base64":
        request["body"], request["isBase64Encoded"] = base64.b64encode(body).decode() + "!", True
    # WHEN it is posted
    response = app.lambda_handler(request, LambdaContextStub("intake"))
    # THEN the answer is a JSON object and never a server error
    status = response["statusCode"]
    event(f"status {status}")
    assert status < 500, response
    answer = json.loads(response["body"])
    assert isinstance(answer, dict)
    if status == 202:
        assert api_key == KEY
        assert answer["accepted"] >= 1 and isinstance(answer["rejected"], list)
    else:
        assert status in {400, 401, 413, 415}, response
        assert isinstance(answer.get("error"), str) and answer["error"]
    if api_key != KEY:
        assert status == 401


# -- hostile rows (issue 15): never 5xx, and a bad row never fails its neighbours -------------------------
GOOD_ROW = {"email": "good@example.com", "first_name": "Good"}


@pytest.fixture
def intake_app(load_function: Any) -> Any:
    return load_function("IntakeFunction", INTAKE_API_KEYS=KEY, INTAKE_MAX_LEADS=str(MAX_LEADS))


def post_rows(app: Any, body: bytes) -> tuple[int, dict[str, Any]]:
    request = http_event("POST", "/leads", body, {"content-type": "application/json", "x-api-key": KEY})
    response = app.lambda_handler(request, LambdaContextStub("intake"))
    assert response["statusCode"] < 500, (response, body[:300])
    return response["statusCode"], json.loads(response["body"])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(hostile.hostile_leads(GOOD_ROW) | st.just(GOOD_ROW), min_size=1, max_size=MAX_LEADS))
def test_hostile_rows_never_5xx_and_good_rows_are_always_accepted(intake_app: Any, rows: list[dict[str, Any]]) -> None:
    status, answer = post_rows(intake_app, hostile.dumps(rows))
    event(f"status {status}")
    plain = {index for index, row in enumerate(rows) if row == GOOD_ROW}
    rejected = {item["index"] for item in answer.get("rejected", [])}
    # THEN a row that is plainly good is never rejected because of its neighbours
    assert not plain & rejected, answer
    if plain:
        assert status == 202 and answer["accepted"] == len(rows) - len(rejected)
    else:
        assert status in {202, 400}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.integers(-2, 2).map(lambda delta: hostile.dumps([GOOD_ROW, clay_sized_row(100_000 + delta)]))
    | st.integers(MAX_LEADS - 1, MAX_LEADS + 1).map(lambda n: hostile.dumps([GOOD_ROW] * n))
    | st.integers(1, 3).map(lambda n: hostile.dumps([clay_sized_row(90_000)] * n + [GOOD_ROW]))
    | st.sampled_from([1_000, 100_000, 1_000_000]).map(hostile.deep_text)
)
def test_sizes_around_every_intake_limit_never_5xx(intake_app: Any, body: bytes) -> None:
    status, answer = post_rows(intake_app, body)
    event(f"status {status}")
    assert status in {202, 400, 413}, answer
    if status == 413:
        assert f"the limit is {MAX_LEADS}" in answer["error"]


def clay_sized_row(size: int) -> dict[str, Any]:
    """A row whose Clay payload (the normalised lead) is exactly `size` bytes."""
    lead = Lead.model_validate({**GOOD_ROW, "notes": "x"}).to_message()
    return {**GOOD_ROW, "notes": "x" * (size - len(dump_json(lead).encode()) + 1)}
