"""What the sender tests do to a cold-started SenderFunction, whatever its queues are (moto's or in memory)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from tests.conftest import LambdaContextStub


class SenderInvocation(ABC):
    """Invoking the handler on messages received from LeadQueue; subclasses say how messages are queued and received."""

    module: Any

    @abstractmethod
    def enqueue(self, *bodies: dict[str, Any] | str) -> None: ...

    @abstractmethod
    def receive(self, expected: int) -> dict[str, Any]:
        """An SQS event of `expected` messages received from LeadQueue, as Lambda builds it."""

    def run(self, event: dict[str, Any], remaining_ms: int = 30_000) -> list[str]:
        """Invoke the handler; the ids of the messages it reported as failed."""
        response = self.module.lambda_handler(event, LambdaContextStub("sender", remaining_ms))
        return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]

    def send(self, *bodies: dict[str, Any] | str, remaining_ms: int = 30_000) -> tuple[dict[str, Any], list[str]]:
        self.enqueue(*bodies)
        event = self.receive(len(bodies))
        return event, self.run(event, remaining_ms)
