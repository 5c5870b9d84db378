"""The local gateway's response mapping and routes, and the destination sinks."""

from __future__ import annotations

import base64

import pytest
import requests

from clay_pipeline.adapters.hubspot import UPSERT_PATH
from local.gateway import http_routes, to_http_response
from local.sinks import Sinks
from tests.conftest import HUBSPOT_TOKEN as TOKEN

pytestmark = pytest.mark.unit


def test_routes_come_from_the_templates_http_api_events() -> None:
    routes = http_routes()
    assert routes["POST /clay/callback"] == "CallbackFunction"
    assert routes["POST /clay/token"] == "CallbackFunction"
    assert routes["POST /leads"] == "IntakeFunction"


def test_response_mapping_like_api_gateway_payload_2() -> None:
    encoded = {"statusCode": 201, "headers": {"X-A": "1"}, "body": base64.b64encode(b"\x00hi").decode()}
    assert to_http_response({**encoded, "isBase64Encoded": True}) == (201, {"x-a": "1"}, b"\x00hi")
    assert to_http_response({"statusCode": 204}) == (204, {}, b"")
    # a bare value (no statusCode) is served as a 200 JSON body
    assert to_http_response({"ok": True}) == (200, {"content-type": "application/json"}, b'{"ok": true}')
    assert to_http_response("text")[2] == b'"text"'


def test_webhook_sink_records_accepted_deliveries_by_idempotency_key(sinks: Sinks) -> None:
    url = sinks.secrets()["OUTREACH_WEBHOOK_URL"]
    answer = requests.post(url, json={"lead_id": "a"}, headers={"Idempotency-Key": "k1"}, timeout=5)
    assert answer.status_code == 200
    [delivery] = sinks.delivered("outreach")
    assert (delivery.key, delivery.payload) == ("k1", {"lead_id": "a"})


def test_a_sink_that_is_down_answers_503_and_records_nothing_until_up(sinks: Sinks) -> None:
    url = sinks.secrets()["SLACK_WEBHOOK_URL"]
    sinks.down("slack")
    refused = requests.post(url, json={"text": "hi"}, timeout=5)
    assert (refused.status_code, refused.headers["retry-after"]) == (503, "1")
    assert (sinks.delivered("slack"), sinks.refused["slack"]) == ([], 1)
    sinks.up("slack")
    assert requests.post(url, json={"text": "hi"}, timeout=5).status_code == 200
    assert len(sinks.delivered("slack")) == 1


def test_a_slow_sink_processes_the_delivery_and_answers_after_the_caller_gave_up(sinks: Sinks) -> None:
    url = sinks.secrets()["ZAPIER_WEBHOOK_URL"]
    sinks.slow("zapier", 1.0)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(url, json={"lead_id": "a"}, timeout=0.2)
    assert [d.payload for d in sinks.delivered("zapier")] == [{"lead_id": "a"}]  # processed all the same
    sinks.slow("zapier", None)
    assert requests.post(url, json={"lead_id": "b"}, timeout=0.5).status_code == 200


def test_hubspot_sink_answers_the_batch_upsert_shape_with_new_flags(sinks: Sinks) -> None:
    inputs = [{"idProperty": "email", "id": "A@x.com", "properties": {"email": "A@x.com", "firstname": "Al"}}]
    url = sinks.url + UPSERT_PATH
    unauthorized = requests.post(url, json={"inputs": inputs}, headers={"authorization": "Bearer no"}, timeout=5)
    assert unauthorized.status_code == 401
    headers = {"authorization": f"Bearer {TOKEN}"}
    answer = requests.post(url, json={"inputs": inputs}, headers=headers, timeout=5)
    body = answer.json()
    assert (answer.status_code, body["status"], len(body["results"])) == (200, "COMPLETE", 1)
    assert (body["results"][0]["properties"]["firstname"], body["results"][0]["new"]) == ("Al", True)
    again = requests.post(url, json={"inputs": inputs}, headers=headers, timeout=5).json()
    assert (again["results"][0]["id"], again["results"][0]["new"]) == (body["results"][0]["id"], False)
    assert [d.key for d in sinks.delivered("hubspot")] == ["a@x.com", "a@x.com"]
    assert requests.get(sinks.url + "/", timeout=5).json()["hubspot"] == inputs * 2
