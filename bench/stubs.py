"""Instant answers for AWS and HTTP calls, so a benchmark measures the handler's own CPU.

AWS: a botocore `before-send` hook on the library's cached clients (clay_pipeline.adapters.aws.client)
returns a canned response after the request was built and signed: serialisation, signing and
parsing are still paid, only the network is skipped. Every call is counted per operation.

HTTP: requests' HTTPAdapter.send answers 200 with a canned JSON body without a socket, for
every Session (the Clay client's, the destinations', the reference handlers').
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests
from botocore.awsrequest import AWSResponse
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

from clay_pipeline.adapters.aws import client


class _Raw:
    """The minimal urllib3-like body botocore's AWSResponse reads."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def _sqs_answer(operation: str, params: dict[str, Any]) -> dict[str, Any]:
    if operation == "SendMessage":
        digest = hashlib.md5(params.get("MessageBody", "").encode(), usedforsecurity=False).hexdigest()
        return {"MessageId": str(uuid.uuid4()), "MD5OfMessageBody": digest}
    if operation == "SendMessageBatch":
        return {
            "Successful": [
                {
                    "Id": entry["Id"],
                    "MessageId": str(uuid.uuid4()),
                    "MD5OfMessageBody": hashlib.md5(entry["MessageBody"].encode(), usedforsecurity=False).hexdigest(),
                }
                for entry in params.get("Entries", [])
            ],
            "Failed": [],
        }
    return {}


def _counter_answer(params: dict[str, Any]) -> dict[str, Any] | None:
    """A counter reservation (StateStore.reserve_up_to) answered as if the counter started at its start value."""
    values = params.get("ExpressionAttributeValues", {})
    if ":amount" not in values:
        return None
    start = int(values.get(":start", {}).get("N", "0"))
    return {"Attributes": {"count": {"N": str(start + int(values[":amount"]["N"]))}}}


class CannedAWS:
    """Answers every call of the given services at once and counts them by `service:Operation`."""

    # UpdateItem answers a counter of 1: every conditional increment (pacing, pool, budget) succeeds.
    DYNAMODB = {"UpdateItem": {"Attributes": {"count": {"N": "1"}}}, "GetItem": {}}

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def install(self, services: tuple[str, ...] = ("dynamodb", "sqs")) -> CannedAWS:
        for service in services:
            client(service).meta.events.register("before-send", self._answer, unique_id="bench-canned")
        return self

    def uninstall(self, services: tuple[str, ...] = ("dynamodb", "sqs")) -> None:
        for service in services:
            client(service).meta.events.unregister("before-send", unique_id="bench-canned")

    def _answer(self, request: Any, event_name: str = "", **_: Any) -> AWSResponse:
        service, operation = event_name.split(".")[1:3]  # before-send.<service>.<Operation>
        self.calls[f"{service}:{operation}"] += 1
        if service == "sqs":
            params = json.loads(request.body or b"{}")
            answer = _sqs_answer(operation, params)
        else:
            answer = _counter_answer(json.loads(request.body or b"{}")) or self.DYNAMODB.get(operation, {})
        headers = {"content-type": "application/x-amz-json-1.0", "x-amzn-requestid": "bench"}
        return AWSResponse(request.url, 200, headers, _Raw(json.dumps(answer).encode()))


Answer = Callable[[requests.PreparedRequest], tuple[int, Any]]


@contextmanager
def instant_http(answer: Answer | None = None) -> Iterator[Counter[str]]:
    """Every requests call answered at once (200 {"ok": true} unless `answer` says otherwise); counted by host."""
    calls: Counter[str] = Counter()
    original = HTTPAdapter.send

    def send(adapter: HTTPAdapter, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        calls[str(request.url).split("/")[2]] += 1
        status, body = answer(request) if answer else (200, {"ok": True})
        payload = json.dumps(body).encode()
        response = requests.Response()
        response.status_code = status
        response.headers = CaseInsensitiveDict({"content-type": "application/json"})
        response.raw = io.BytesIO(payload)
        response._content = payload
        response.encoding = "utf-8"
        response.url = str(request.url)
        response.request = request
        return response

    HTTPAdapter.send = send  # type: ignore[method-assign,assignment]
    try:
        yield calls
    finally:
        HTTPAdapter.send = original  # type: ignore[method-assign]
