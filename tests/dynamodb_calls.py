"""Hooks on the DynamoDB calls the library makes: recording them to prove what a lead or a batch costs,
holding them at a barrier to force a race, failing one to stand for a crash."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from clay_pipeline.adapters.aws import client


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
def before_dynamodb_calls(hook: Callable[..., None], operation: str = "") -> Iterator[None]:
    """Call hook(params=..., model=...) before each call of the library's DynamoDB client (of `operation` only,
    if given); an exception it raises fails that call. The tests' own clients are not hooked."""
    event = "before-parameter-build.dynamodb" + (f".{operation}" if operation else "")
    unique_id = f"test-hook-{id(hook)}"
    events = client("dynamodb").meta.events
    events.register(event, hook, unique_id=unique_id)
    try:
        yield
    finally:
        events.unregister(event, unique_id=unique_id)


@contextmanager
def recorded_dynamodb_calls() -> Iterator[DynamoCalls]:
    """Every call the library's DynamoDB client makes inside the block."""
    recorder = DynamoCalls()
    with before_dynamodb_calls(recorder.record):
        yield recorder
