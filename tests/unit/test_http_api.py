"""API Gateway v2 plumbing: raw bytes, size, content type and JSON errors."""

from __future__ import annotations

import base64

import pytest

from clay_pipeline.http_api import HttpError, check_content_type, check_size, lower_headers, parse_json, raw_body
from local.apigw import http_event

pytestmark = pytest.mark.unit


def test_raw_body_text_and_base64() -> None:
    assert raw_body(http_event("POST", "/x", '{"a":"é"}')) == '{"a":"é"}'.encode()
    binary = b"\xff\xfe{}"
    event = http_event("POST", "/x", binary, {"content-type": "application/octet-stream"})
    assert event["isBase64Encoded"] is True
    assert raw_body(event) == binary


def test_invalid_base64_is_a_400() -> None:
    with pytest.raises(HttpError) as caught:
        raw_body({"body": "!!!not base64", "isBase64Encoded": True})
    assert caught.value.status == 400 and "base64" in caught.value.body["error"]


def test_missing_body_is_empty() -> None:
    assert raw_body({"headers": {}}) == b""


def test_size_limit() -> None:
    check_size(b"x" * 10, 10)
    with pytest.raises(HttpError) as caught:
        check_size(b"x" * 11, 10)
    assert caught.value.status == 413


@pytest.mark.parametrize(
    "content_type", ["", "application/json", "application/json; charset=utf-8", "application/vnd.api+json", "text/json"]
)
def test_json_content_types_pass(content_type: str) -> None:
    check_content_type({"content-type": content_type} if content_type else {})


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_other_content_types_are_415(content_type: str) -> None:
    with pytest.raises(HttpError) as caught:
        check_content_type({"content-type": content_type})
    assert caught.value.status == 415


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"", "empty"), (b"   ", "empty"), (b"{", "not valid JSON"), (b"\xff\xfe", "not UTF-8"), (b"NaN-", "not valid")],
)
def test_parse_json_errors_are_clear(body: bytes, message: str) -> None:
    with pytest.raises(HttpError) as caught:
        parse_json(body)
    assert caught.value.status == 400 and message in caught.value.body["error"]


def test_lower_headers() -> None:
    assert lower_headers({"headers": {"X-Clay-Signature": "a"}}) == {"x-clay-signature": "a"}
    assert lower_headers({}) == {}


def test_base64_helper_round_trip() -> None:
    event = http_event("POST", "/x", b"\x00\x01", {"content-type": "application/octet-stream"})
    assert base64.b64decode(event["body"]) == b"\x00\x01"
