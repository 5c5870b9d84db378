"""Queue pollers that behave like Lambda's SQS event source mappings.

Per SQS event of a function in template.yaml: up to BatchSize messages gathered for at most
MaximumBatchingWindowInSeconds, as many concurrent batches as ScalingConfig's
MaximumConcurrency allows (each on its own warm instance). After an invocation:
- it raised: nothing is deleted, so the whole batch comes back after the visibility timeout;
- with ReportBatchItemFailures: every record except the reported ones is deleted (a report
  naming an id that is not in the batch fails the whole batch, as Lambda does);
- otherwise: the whole batch is deleted.
Visibility timeouts, ChangeMessageVisibility and redrive to the DLQ after maxReceiveCount
are SQS's own (moto implements them on receive), so nothing here re-implements them.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from clay_pipeline.adapters.aws import client
from local.aws import Provisioned
from local.lambda_runtime import LambdaFunction
from local.sqs_events import from_received
from local.template import FunctionSpec

log = logging.getLogger("local.pollers")
RECEIVE_WAIT_SECONDS = 1  # long poll: short enough that stop() is prompt
SQS_MAX_MESSAGES = 10


@dataclass(frozen=True)
class EventSource:
    """One SQS event of a function, resolved against the provisioned queues."""

    function_id: str
    queue_id: str
    queue_url: str
    queue_arn: str
    batch_size: int
    window_seconds: float
    report_failures: bool
    concurrency: int


def event_sources(
    specs: dict[str, FunctionSpec], provisioned: Provisioned, default_concurrency: int = 2
) -> list[EventSource]:
    sources = []
    for logical_id, spec in specs.items():
        for event in spec.events.values():
            if event.get("Type") != "SQS":
                continue
            props = provisioned.resolver.resolve(event.get("Properties", {}))
            queue_arn = str(props["Queue"])
            queue_id = next(q for q, url in provisioned.queue_urls.items() if url.endswith("/" + arn_name(queue_arn)))
            scaling = props.get("ScalingConfig", {}) or {}
            sources.append(
                EventSource(
                    function_id=logical_id,
                    queue_id=queue_id,
                    queue_url=provisioned.queue_urls[queue_id],
                    queue_arn=queue_arn,
                    batch_size=int(props.get("BatchSize", 10)),
                    window_seconds=float(props.get("MaximumBatchingWindowInSeconds", 0)),
                    report_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
                    concurrency=int(scaling.get("MaximumConcurrency", default_concurrency)),
                )
            )
    return sources


def arn_name(arn: str) -> str:
    return arn.rsplit(":", 1)[-1]


def failed_ids(response: Any, batch_ids: list[str]) -> set[str]:
    """The message ids to keep, from a ReportBatchItemFailures answer (Lambda's rules)."""
    if response is None or (isinstance(response, dict) and not response.get("batchItemFailures")):
        return set()
    failures = response.get("batchItemFailures") if isinstance(response, dict) else None
    if not isinstance(failures, list):
        return set(batch_ids)
    ids = {item.get("itemIdentifier") if isinstance(item, dict) else None for item in failures}
    if not ids <= set(batch_ids):  # an empty, null or unknown id fails the whole batch
        return set(batch_ids)
    return {str(i) for i in ids}


class QueuePoller:
    """MaximumConcurrency worker threads, each receiving a batch and invoking the function with it."""

    def __init__(self, source: EventSource, function: LambdaFunction) -> None:
        self.source = source
        self.function = function
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.in_flight = 0  # batches received and not yet settled
        self.batches = 0
        self.records = 0
        self.kept = 0  # records left in the queue (reported failures or a failed invocation)
        self.errors = 0  # invocations that raised
        self.bodies: dict[str, str] = {}  # message id -> body of every message handed to the function

    def start(self) -> None:
        for number in range(self.source.concurrency):
            thread = threading.Thread(target=self._run, name=f"poller-{self.source.function_id}-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def request_stop(self) -> None:
        """Take no new batch; the one in flight finishes (stop() waits for it)."""
        self._stop.set()

    def stop(self) -> None:
        self.request_stop()
        for thread in self._threads:
            thread.join(timeout=self.function.timeout_seconds + RECEIVE_WAIT_SECONDS + 1)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # the emulator going away at shutdown, or a transient error
                if not self._stop.is_set():
                    log.exception("poller for %s failed; polling again", self.source.function_id)
                    time.sleep(0.2)

    def poll_once(self) -> int:
        """Receive one batch (waiting for the batching window), invoke, settle. Returns the batch size."""
        messages = self._receive_batch()
        if not messages:
            return 0
        # Until deleted, received messages count as not visible in the queue: idle checks see them either way.
        with self._lock:
            self.in_flight += 1
        try:
            self._invoke(messages)
        finally:
            with self._lock:
                self.in_flight -= 1
        return len(messages)

    def _receive_batch(self) -> list[dict[str, Any]]:
        source = self.source
        messages: list[dict[str, Any]] = []
        window_ends = 0.0
        while len(messages) < source.batch_size and not self._stop.is_set():
            remaining = window_ends - time.monotonic() if messages else RECEIVE_WAIT_SECONDS
            if messages and remaining <= 0:
                break
            response = client("sqs").receive_message(
                QueueUrl=source.queue_url,
                MaxNumberOfMessages=min(SQS_MAX_MESSAGES, source.batch_size - len(messages)),
                WaitTimeSeconds=RECEIVE_WAIT_SECONDS if remaining >= RECEIVE_WAIT_SECONDS else 0,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            received = response.get("Messages", [])
            if not messages and not received:
                return []
            if not messages:
                window_ends = time.monotonic() + source.window_seconds
            # A message whose visibility ran out while the window was open comes again: one copy per batch.
            seen = {m["MessageId"] for m in received}
            messages = [m for m in messages if m["MessageId"] not in seen] + received
            if not received:
                time.sleep(min(0.05, max(0.0, window_ends - time.monotonic())))
        return messages

    def _invoke(self, messages: list[dict[str, Any]]) -> None:
        event = from_received(messages, self.source.queue_arn)
        ids = [m["MessageId"] for m in messages]
        with self._lock:
            self.bodies.update((m["MessageId"], m["Body"]) for m in messages)
        try:
            response = self.function.invoke(event)
        except Exception:
            # Lambda: a function error fails the whole batch; the messages return after the visibility timeout.
            log.exception("%s raised: the whole batch stays in the queue", self.source.function_id)
            keep = set(ids)
            with self._lock:
                self.errors += 1
        else:
            keep = failed_ids(response, ids) if self.source.report_failures else set()
        done = [m for m in messages if m["MessageId"] not in keep]
        self._delete(done)
        with self._lock:
            self.batches += 1
            self.records += len(messages)
            self.kept += len(keep)

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), SQS_MAX_MESSAGES):
            chunk = messages[start : start + SQS_MAX_MESSAGES]
            response = client("sqs").delete_message_batch(
                QueueUrl=self.source.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
            for failure in response.get("Failed", []):
                log.warning("could not delete a processed message: %s", failure.get("Code"))
