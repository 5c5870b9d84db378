"""SQS records and the partial batch response of the queue consumers."""

from __future__ import annotations

import io
import json

import pytest

from clay_pipeline.queue_batch import QueueRecord, process_batch, records_of
from local.sqs_events import sqs_event, sqs_record

pytestmark = pytest.mark.unit

ARN = "arn:aws:sqs:us-east-1:123456789012:queue"


class Wait(Exception):
    pass


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
