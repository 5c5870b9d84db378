"""Recording the DynamoDB calls the library makes, to prove what a lead or a batch costs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from clay_pipeline.aws import client


@dataclass
class DynamoCalls:
    calls: list[tuple[str, str]] = field(default_factory=list)  # (operation, state key)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        key = (params.get("Key") or params.get("Item") or {}).get("pk", {}).get("S", "")
        with self._lock:
            self.calls.append((model.name, key))

    def on(self, prefix: str, operation: str | None = None) -> int:
        """How many calls touched keys starting with `prefix` (of one operation, if given)."""
        return sum(1 for op, key in self.calls if key.startswith(prefix) and operation in (None, op))


@contextmanager
def recorded_dynamodb_calls() -> Iterator[DynamoCalls]:
    """Every call the library's DynamoDB client makes inside the block (the tests' own clients are not counted)."""
    recorder = DynamoCalls()
    events = client("dynamodb").meta.events
    events.register("before-parameter-build.dynamodb", recorder.record, unique_id="dynamodb-call-recorder")
    try:
        yield recorder
    finally:
        events.unregister("before-parameter-build.dynamodb", unique_id="dynamodb-call-recorder")
