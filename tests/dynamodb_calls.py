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


def make_moto_writes_atomic(monkeypatch: Any) -> None:
    """DynamoDB checks a condition and writes the item as one atomic step; moto's threaded server does not
    (it reads, checks and writes in separate steps, so two threads can both pass one condition). Serialise
    moto's item writes so concurrency tests exercise the library, not that race."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.Lock()
    for name in ("put_item", "update_item", "delete_item"):
        original = getattr(DynamoDBBackend, name)

        def atomic(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(*args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, atomic)
