"""adapters/crm.py: the batched-CRM seam's loop (requests of batch_size, retries of what failed retryably only,
nothing sent after the CRM said to stop), and HubSpot as a BatchedCrm on its simulator."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping

import pytest

from clay_pipeline.adapters.crm import BatchedCrm, upsert_in_batches
from clay_pipeline.adapters.hubspot import UPSERT_PATH, HubSpotContacts
from clay_pipeline.adapters.webhooks import HttpClient, RetryPolicy
from clay_pipeline.core.deliveries import DELIVERED, DeliveryResult, Status
from clay_pipeline.core.routing_message import RoutingMessage
from local.http_stub import StubServer
from local.hubspot_sim import HubSpotSim
from tests.unit.adapters.test_hubspot import TOKEN
from tests.unit.core.test_routing_plan import routed

pytestmark = pytest.mark.unit

SLOW = DeliveryResult(Status.RETRYABLE, "throttled_429", retry_after=0.0)
STOP = DeliveryResult(Status.PAUSED, "daily_limit", retry_after=60.0, detail="stop")


class Requests:
    """A CRM's batch endpoint as a function: the chunks it was sent, and each record's scripted results."""

    def __init__(self, results: dict[str, list[DeliveryResult]] | None = None) -> None:
        self.chunks: list[list[str]] = []
        self.results = results or {}

    def __call__(self, chunk: list[str], timeout: float, deadline: float) -> Mapping[str, DeliveryResult]:
        self.chunks.append(chunk)
        return {item: (self.results.get(item) or [DELIVERED]).pop(0) for item in chunk}


def retry(attempts: int = 2) -> RetryPolicy:
    return RetryPolicy(timeout_seconds=5, attempts=attempts, backoff_seconds=0, sleep=lambda seconds: None)


def test_records_go_out_in_requests_of_the_batch_size() -> None:
    # GIVEN five records and a batch size of two WHEN upserted THEN three requests, every record delivered
    send = Requests()
    results = upsert_in_batches({k: k for k in "abcde"}, 2, send, retry(), time.monotonic() + 30)
    assert send.chunks == [["a", "b"], ["c", "d"], ["e"]]
    assert results == dict.fromkeys("abcde", DELIVERED)


def test_only_the_records_that_failed_retryably_are_sent_again() -> None:
    # GIVEN b throttled once and c refused for good
    refused = DeliveryResult(Status.PERMANENT, "rejected")
    send = Requests({"b": [SLOW, DELIVERED], "c": [refused]})
    results = upsert_in_batches({k: k for k in "abc"}, 10, send, retry(), time.monotonic() + 30)
    # THEN the retry carries b alone, and c keeps its refusal
    assert send.chunks == [["a", "b", "c"], ["b"]]
    assert results == {"a": DELIVERED, "b": DELIVERED, "c": refused}


def test_after_the_crm_says_to_stop_the_other_requests_are_not_sent_to_be_refused() -> None:
    # GIVEN the first request's record answered "stop" (a daily limit) WHEN four records go two at a time
    send = Requests({"a": [STOP]})
    results = upsert_in_batches({k: k for k in "abcd"}, 2, send, retry(), time.monotonic() + 30)
    # THEN one request only; the records not sent carry the stop (they wait for the pause to end)
    assert send.chunks == [["a", "b"]]
    assert results == {"a": STOP, "b": DELIVERED, "c": STOP, "d": STOP}


def test_records_the_deadline_leaves_no_time_for_are_out_of_time() -> None:
    send = Requests()
    results = upsert_in_batches({"a": "a"}, 10, send, retry(), time.monotonic())
    assert send.chunks == [] and results["a"].reason == "out_of_time"


@pytest.fixture
def hubspot(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[HubSpotContacts, StubServer]]:
    monkeypatch.delenv("CONFIG_SECRET_ID", raising=False)
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", TOKEN)
    crm = HubSpotSim(token=TOKEN)
    crm.add_custom_properties([("clay_icp_score", "number"), ("clay_enrichment_date", "date")])
    with StubServer(crm.answer) as server:
        yield HubSpotContacts(HttpClient(), server.url, retry=retry(), batch_size=2), server


def test_hubspot_is_a_batched_crm_answering_per_message(hubspot: tuple[HubSpotContacts, StubServer]) -> None:
    crm, server = hubspot
    seam: BatchedCrm = crm  # what the router sees of it
    # GIVEN three messages, two of them enrichments of one email
    messages: dict[str, RoutingMessage] = {
        "m1": routed({"lead_id": "a", "email": "a@x.com", "icp_score": 75}),
        "m2": routed({"lead_id": "b", "email": "b@x.com", "icp_score": 75}),
        "m3": routed({"lead_id": "a2", "email": "a@x.com", "icp_score": 80}, "2026-01-01T00:05:00+00:00"),
    }
    # WHEN upserted THEN one contact per email (two inputs, one request of batch size 2), each message answered
    results = seam.upsert_leads(messages, time.monotonic() + 30)
    assert results == dict.fromkeys(messages, DELIVERED)
    [upsert] = server.received(UPSERT_PATH)
    inputs = {item["id"]: item["properties"]["clay_icp_score"] for item in upsert.json()["inputs"]}
    assert inputs == {"a@x.com": "80", "b@x.com": "75"}  # the newest enrichment of a@x.com
    assert (seam.name, seam.label, seam.configured()) == ("hubspot", "HubSpot", True)
