"""Lambda execution environments in one process: what the gateway and the queue pollers invoke.

Each instance is the function's handler module imported afresh (a cold start with the
environment template.yaml gives it), and handles one event at a time, as a Lambda
execution environment does. Module state (settings, clients' owners, Powertools'
BatchProcessor) is per instance, so concurrent invocations never share it; when every
instance is busy, another one is cold-started, as Lambda scales out.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import IO, Any

from local.template import functions, load_handler_module

log = logging.getLogger("local.lambda_runtime")
# Imports change os.environ while a handler module loads: one cold start at a time.
_LOAD_LOCK = threading.Lock()


class LambdaContext:
    """The attributes Powertools and the handlers read, with the time left counted from the function's Timeout."""

    def __init__(self, function_name: str, timeout_seconds: float, memory_mb: int = 256) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class LambdaFunction:
    """A function's warm instances; `invoke` runs an event on an idle one (or a new cold start)."""

    def __init__(self, logical_id: str, environment: dict[str, str]) -> None:
        spec = functions()[logical_id]
        self.logical_id = logical_id
        self.environment = environment
        self.timeout_seconds = spec.timeout
        self.memory_mb = spec.memory
        self._idle: list[ModuleType] = []
        self._lock = threading.Lock()
        self.invocations = 0

    def warm_up(self) -> None:
        """Cold-start one instance now: a bad configuration fails here, at stack start, like a deploy would."""
        module = self._cold_start()
        with self._lock:
            self._idle.append(module)

    def invoke(self, event: dict[str, Any]) -> Any:
        """Run the handler; its exceptions propagate (the caller decides what Lambda would do with them)."""
        with self._lock:
            module = self._idle.pop() if self._idle else None
            self.invocations += 1
        if module is None:
            module = self._cold_start()
        started = time.monotonic()
        try:
            context = LambdaContext(self.logical_id, self.timeout_seconds, self.memory_mb)
            return module.lambda_handler(event, context)
        finally:
            with self._lock:
                self._idle.append(module)
            # A thread cannot be killed as Lambda kills a function at its timeout: say so instead.
            if (elapsed := time.monotonic() - started) > self.timeout_seconds:
                log.warning("%s ran %.1f s, past its %d s Timeout", self.logical_id, elapsed, self.timeout_seconds)

    def _cold_start(self) -> ModuleType:
        with _LOAD_LOCK:
            return load_handler_module(self.logical_id, self.environment)


@contextlib.contextmanager
def function_output_to(stream: IO[str]) -> Iterator[None]:
    """Send what the functions write (Powertools' JSON logs and the metrics it prints) to `stream`.

    One process hosts every function, so this is process-wide: callers keep their own output
    on a stream they saved before (run: the terminal; invoke: stdout for the response).
    """
    from clay_pipeline.observability import logger

    handler: Any = logger.registered_handler
    previous = handler.setStream(stream) if isinstance(handler, logging.StreamHandler) else None
    try:
        with contextlib.redirect_stdout(stream):
            yield
    finally:
        if previous is not None:
            handler.setStream(previous)
