"""Contract of the queue's fake (tests/fakes/queues.py): every test runs on Queue against moto's SQS and on the
fake: what a receiver gets, delays and visibility, and SQS's refusals."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError

from clay_pipeline.adapters.aws import client
from clay_pipeline.adapters.queues import SQS_MAX_MESSAGE_BYTES, Queue
from local.aws import Provisioned
from tests.fakes.queues import SQS_LIMIT_BYTES, FakeQueue

pytestmark = pytest.mark.integration


@dataclass
class Received:
    body: str
    attributes: dict[str, str]
    receipt_handle: str


@dataclass
class QueueUnderTest:
    queue: Any

    def receive(self) -> list[Received]:
        if isinstance(self.queue, FakeQueue):
            return [Received(m.body, m.attributes, m.receipt_handle) for m in self.queue.receive()]
        messages = (
            client("sqs")
            .receive_message(
                QueueUrl=self.queue.url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
            )
            .get("Messages", [])
        )
        return [
            Received(
                m["Body"],
                {name: value["StringValue"] for name, value in m.get("MessageAttributes", {}).items()},
                m["ReceiptHandle"],
            )
            for m in messages
        ]

    def delayed(self) -> int:
        if isinstance(self.queue, FakeQueue):
            return self.queue.delayed()
        attributes = client("sqs").get_queue_attributes(
            QueueUrl=self.queue.url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessagesDelayed"])


class QueueContract:
    """What both Queue and FakeQueue must do."""

    def test_what_is_sent_is_received_as_sent_and_a_delayed_message_only_later(self, sqs: QueueUnderTest) -> None:
        sqs.queue.send({"lead_key": "ld_1", "note": "caf\u00e9 \ufffe"})
        sqs.queue.send_raw('{"raw": true}', attributes={"reason": "bad", "detail": ""})
        sqs.queue.send({"lead_key": "later"}, delay_seconds=60)
        assert sqs.delayed() == 1
        received = sorted(sqs.receive(), key=lambda message: message.body)
        assert [json.loads(message.body) for message in received] == [
            {"lead_key": "ld_1", "note": "caf\u00e9 \ufffe"},  # the character SQS refuses travels as a JSON escape
            {"raw": True},
        ]
        assert [message.attributes for message in received] == [{}, {"reason": "bad"}]  # empty values are left out
        assert sqs.receive() == []  # received: hidden for the visibility timeout
        assert sqs.delayed() == 1  # a received message is in flight, not delayed

    def test_a_message_handed_back_is_hidden_that_long_and_an_unknown_receipt_is_refused(
        self, sqs: QueueUnderTest
    ) -> None:
        sqs.queue.send({"n": 1})
        [message] = sqs.receive()
        sqs.queue.change_visibility(message.receipt_handle, 0)
        [again] = sqs.receive()
        assert again.body == message.body
        sqs.queue.change_visibility(again.receipt_handle, 1)
        assert sqs.receive() == []
        time.sleep(1.2)  # the hand-back's length, not a measurement
        [third] = sqs.receive()
        sqs.queue.change_visibility(third.receipt_handle, 60)
        assert sqs.receive() == []
        with pytest.raises(ClientError):
            sqs.queue.change_visibility("not-a-receipt-handle", 10)

    def test_hold_hands_the_message_back_and_near_the_last_receive_queues_a_fresh_copy(
        self, sqs: QueueUnderTest
    ) -> None:
        sqs.queue.send({"n": 1})
        [message] = sqs.receive()
        # WHEN held on an early receive THEN it stays (False), out of sight for the seconds given
        assert sqs.queue.hold(message.body, message.receipt_handle, 1, 5, 0) is False
        [again] = sqs.receive()
        # WHEN held one receive before maxReceiveCount THEN a fresh copy waits (True), delayed by the seconds given
        assert sqs.queue.hold(again.body, again.receipt_handle, 4, 5, 60) is True
        assert sqs.receive() == []
        # AND a hold whose hand-back is refused (a stale receipt) is only logged: the message returns on its own
        assert sqs.queue.hold(again.body, "not-a-receipt-handle", 1, 5, 30) is False

    def test_a_message_over_sqss_limit_is_refused(self, sqs: QueueUnderTest) -> None:
        with pytest.raises(ClientError):
            sqs.queue.send_raw("x" * (SQS_LIMIT_BYTES + 1))
        sqs.queue.send_raw("x" * SQS_MAX_MESSAGE_BYTES)
        assert len(sqs.receive()) == 1

    def test_a_batch_sends_every_message_that_fits_and_names_the_one_too_large(self, sqs: QueueUnderTest) -> None:
        # GIVEN twelve messages, the sixth over what the adapter sends (SQS_MAX_MESSAGE_BYTES), the others
        # 60 KB each (more than ten entries and more than one call's 256 KiB together)
        messages = [{"n": n, "notes": "x" * 60_000} for n in range(12)]
        messages[5]["notes"] = "x" * SQS_MAX_MESSAGE_BYTES
        # WHEN they are sent as a batch THEN only the sixth is refused, by its index
        assert sqs.queue.send_batch(messages) == [5]
        received = sqs.receive() + sqs.receive() + sqs.receive()
        assert sorted(json.loads(message.body)["n"] for message in received) == [n for n in range(12) if n != 5]


class TestOnSQS(QueueContract):
    """The adapter, on the template's RoutingQueue in moto's server."""

    @pytest.fixture
    def sqs(self, stack: Provisioned) -> QueueUnderTest:
        return QueueUnderTest(Queue(stack.queue_urls["RoutingQueue"]))


class TestOnFake(QueueContract):
    """The fake the service tests use."""

    @pytest.fixture
    def sqs(self) -> QueueUnderTest:
        return QueueUnderTest(FakeQueue("https://sqs.fake/RoutingQueue"))
