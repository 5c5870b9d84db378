"""SQS records and the partial batch response of the queue consumers."""

from __future__ import annotations

import io
import json

import pytest

from clay_pipeline.core.outcomes import Wait
from clay_pipeline.queue_batch import QueueRecord, process_batch, records_of
from local.sqs_events import sqs_event, sqs_record

pytestmark = pytest.mark.unit

ARN = "arn:aws:sqs:us-east-1:123456789012:queue"


def test_records_carry_id_receipt_body_and_receive_count() -> None:
    event = sqs_event([sqs_record('{"a": 1}', ARN, message_id="m1", receipt_handle="r1", receive_count=3)])
    [record] = records_of(event)
    assert (record.message_id, record.receipt_handle, record.body, record.receive_count) == ("m1", "r1", '{"a": 1}', 3)


@pytest.mark.parametrize("count", [None, "", "x", "0", "-2"])
def test_a_missing_or_bad_receive_count_reads_as_the_first_delivery(count: str | None) -> None:
    raw = sqs_record("{}", ARN)
    raw["attributes"]["ApproximateReceiveCount"] = count
    assert QueueRecord.from_event(raw).receive_count == 1


def test_an_event_without_records_is_an_empty_batch() -> None:
    assert records_of({}) == []
    assert process_batch([], lambda record: None) == {"batchItemFailures": []}


def test_only_the_records_whose_handler_raised_are_reported(captured_logs: io.StringIO) -> None:
    # GIVEN a batch where one record must wait (an expected outcome) and one hits a bug
    records = records_of(sqs_event([sqs_record(body, ARN, message_id=body) for body in ("ok", "wait", "bug", "ok2")]))

    def handle(record: QueueRecord) -> str:
        if record.body == "wait":
            raise Wait("waits")
        if record.body == "bug":
            raise KeyError("oops")
        return "done"

    # WHEN processed THEN both stay in the queue, in batch order, and the others are done
    response = process_batch(records, handle, expected=(Wait,))
    assert response == {"batchItemFailures": [{"itemIdentifier": "wait"}, {"itemIdentifier": "bug"}]}
    # AND only the bug is logged as an error, with its traceback
    errors = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    assert [(e["level"], e["message_id"]) for e in errors] == [("ERROR", "bug")]
    assert "KeyError" in errors[0]["exception"]


def test_a_wait_is_reported_as_it_came_and_its_delay_is_left_to_the_service_that_set_it() -> None:
    # GIVEN a record whose handler set its delay (60 s) and raised the Wait saying so
    [record] = records_of(sqs_event([sqs_record("{}", ARN, message_id="m1")]))
    raised: list[Wait] = []

    def handle(record: QueueRecord) -> None:
        raised.append(Wait("paused: hubspot", 60))
        raise raised[-1]

    # WHEN processed THEN the record is only reported (SQS keeps it): no delay or visibility in the answer
    assert process_batch([record], handle, expected=(Wait,)) == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    # AND the Wait says what the handler set, whole seconds, never negative
    assert raised[0].delay_seconds == 60
    assert (Wait("x", 1.2).delay_seconds, Wait("x", -5).delay_seconds, Wait("x").delay_seconds) == (2, 0, 0)
