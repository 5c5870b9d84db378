"""SQS event source mapping events (what Lambda passes a queue consumer), built like Lambda builds them."""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any


def sqs_record(
    body: str,
    queue_arn: str,
    message_id: str | None = None,
    receipt_handle: str | None = None,
    receive_count: int = 1,
    attributes: dict[str, str] | None = None,
) -> dict[str, Any]:
    now_ms = str(int(time.time() * 1000))
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": receipt_handle or uuid.uuid4().hex,
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": now_ms,
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": now_ms,
        },
        "messageAttributes": {
            name: {"stringValue": value, "stringListValues": [], "binaryListValues": [], "dataType": "String"}
            for name, value in (attributes or {}).items()
        },
        "md5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": queue_arn.split(":")[3] if queue_arn.count(":") >= 5 else "us-east-1",
    }


def sqs_event(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": records}


def from_received(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """An event from messages returned by ReceiveMessage (AttributeNames=All), as Lambda's poller would."""
    return sqs_event(
        [
            sqs_record(
                message["Body"],
                queue_arn,
                message_id=message["MessageId"],
                receipt_handle=message["ReceiptHandle"],
                receive_count=int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
                attributes={
                    name: value.get("StringValue", "") for name, value in message.get("MessageAttributes", {}).items()
                },
            )
            for message in messages
        ]
    )
