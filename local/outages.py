"""A dependency down for a while: DynamoDB or SQS refusing the pipeline's calls for N seconds.

The outage sits where a real one is felt: in botocore, just before a request leaves the shared
client (clay_pipeline.adapters.aws.client), it fails as a refused connection (EndpointConnectionError),
so botocore's own retries, the callback's retries and every error path run as they would
against AWS. The clock is time.monotonic unless a benchmark passes a virtual one.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Collection
from typing import Any

from botocore.exceptions import EndpointConnectionError

from clay_pipeline.adapters.aws import client

_ids = itertools.count()


class Outage:
    """`service` (dynamodb, sqs) refuses every call, or only `operations` (UpdateItem, SendMessage...), while on."""

    def __init__(
        self,
        service: str,
        seconds: float,
        operations: Collection[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.seconds = seconds
        self.operations = frozenset(operations)
        self.clock = clock
        self.until = float("-inf")
        self.refused = 0  # calls that failed because of the outage
        self._lock = threading.Lock()
        self._handler_id = f"outage-{service}-{next(_ids)}"

    @property
    def active(self) -> bool:
        return self.clock() < self.until

    def start(self) -> Outage:
        """Down from now for `seconds` (again, if it was already on)."""
        self.until = self.clock() + self.seconds
        client(self.service).meta.events.register(f"before-send.{self.service}", self, unique_id=self._handler_id)
        return self

    def stop(self) -> None:
        self.until = float("-inf")
        client(self.service).meta.events.unregister(f"before-send.{self.service}", unique_id=self._handler_id)

    def __enter__(self) -> Outage:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __call__(self, request: Any, event_name: str = "", **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        if not self.active or (self.operations and operation not in self.operations):
            return  # None: botocore sends the request as usual
        with self._lock:
            self.refused += 1
        raise EndpointConnectionError(endpoint_url=str(getattr(request, "url", self.service)))
