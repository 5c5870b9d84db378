"""Reading a request's raw bytes as JSON: size, content type, syntax, each refused with a clear reason."""

from __future__ import annotations

import pytest

from clay_pipeline.core.errors import Rejected
from clay_pipeline.core.request_body import check_content_type, check_size, parse_json
from clay_pipeline.http_api import answer_to

pytestmark = pytest.mark.unit


def test_size_limit() -> None:
    check_size(b"x" * 10, 10)
    with pytest.raises(Rejected) as caught:
        check_size(b"x" * 11, 10)
    answer = answer_to(caught.value)
    assert answer.status == 413


@pytest.mark.parametrize(
    "content_type", ["", "application/json", "application/json; charset=utf-8", "application/vnd.api+json", "text/json"]
)
def test_json_content_types_pass(content_type: str) -> None:
    check_content_type({"content-type": content_type} if content_type else {})


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_other_content_types_are_415(content_type: str) -> None:
    with pytest.raises(Rejected) as caught:
        check_content_type({"content-type": content_type})
    answer = answer_to(caught.value)
    assert answer.status == 415


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"", "empty"), (b"   ", "empty"), (b"{", "not valid JSON"), (b"\xff\xfe", "not UTF-8"), (b"NaN-", "not valid")],
)
def test_parse_json_errors_are_clear(body: bytes, message: str) -> None:
    with pytest.raises(Rejected) as caught:
        parse_json(body)
    answer = answer_to(caught.value)
    assert answer.status == 400 and message in answer.body["error"]


@pytest.mark.parametrize("depth", [100_000, 1_000_000])
def test_json_nested_beyond_the_parser_is_a_400(depth: int) -> None:
    with pytest.raises(Rejected) as caught:
        parse_json(b"[" * depth + b"]" * depth)
    answer = answer_to(caught.value)
    assert answer.status == 400 and "nested too deeply" in answer.body["error"]


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_json_number_constants_are_a_400(constant: bytes) -> None:
    with pytest.raises(Rejected) as caught:
        parse_json(b'{"lead_id": "x", "score": ' + constant + b"}")
    answer = answer_to(caught.value)
    assert answer.status == 400 and constant.decode().lstrip("-") in answer.body["error"]
