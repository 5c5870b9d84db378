"""The local Lambda runtime: functions running side by side in one process log as themselves (observability)."""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from clay_pipeline.observability import log_metrics, logger, set_correlation_id
from local.lambda_runtime import LambdaFunction

pytestmark = pytest.mark.unit


def warm_function(logical_id: str, barrier: threading.Barrier) -> LambdaFunction:
    """The template's function with one warm instance whose handler waits for the other invocation twice."""

    @logger.inject_lambda_context(log_event=False, clear_state=True)
    @log_metrics
    def lambda_handler(event: dict[str, Any], context: Any) -> str:
        if event.get("correlation_id"):
            set_correlation_id(event["correlation_id"])
        barrier.wait(timeout=10)  # both invocations have set their keys
        logger.info("inside", extra={"who": logical_id})
        barrier.wait(timeout=10)
        return logical_id

    function = LambdaFunction(logical_id, {})
    function._idle.append(SimpleNamespace(lambda_handler=lambda_handler))  # type: ignore[arg-type]
    return function


def test_concurrent_functions_log_their_own_name_and_correlation_id(captured_logs: Any) -> None:
    # GIVEN the callback and the router invoked at the same time in one process (as the local stack does),
    # the callback with a correlation id and the router without one
    barrier = threading.Barrier(2)
    callback, router = warm_function("CallbackFunction", barrier), warm_function("RouterFunction", barrier)
    results: dict[str, Any] = {}
    threads = [
        threading.Thread(target=lambda: results.update(a=callback.invoke({"correlation_id": "ld_callback"}))),
        threading.Thread(target=lambda: results.update(b=router.invoke({}))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert results == {"a": "CallbackFunction", "b": "RouterFunction"}
    # THEN each line names the function that wrote it, and only the callback's carries its correlation id
    lines = {line["who"]: line for line in map(json.loads, captured_logs.getvalue().splitlines()) if line.get("who")}
    assert lines["CallbackFunction"]["function_name"] == "CallbackFunction"
    assert lines["CallbackFunction"]["correlation_id"] == "ld_callback"
    assert lines["RouterFunction"]["function_name"] == "RouterFunction"
    assert "correlation_id" not in lines["RouterFunction"]
    assert lines["CallbackFunction"]["function_request_id"] != lines["RouterFunction"]["function_request_id"]


def test_a_correlation_id_is_not_carried_into_the_next_invocation(captured_logs: Any) -> None:
    # GIVEN one warm instance that served a callback with a correlation id
    barrier = threading.Barrier(1)
    function = warm_function("CallbackFunction", barrier)
    function.invoke({"correlation_id": "ld_first"})
    # WHEN the same thread serves the next request, which sets none
    function.invoke({})
    # THEN its line has no correlation id
    first, second = [json.loads(line) for line in captured_logs.getvalue().splitlines() if '"who"' in line]
    assert first["correlation_id"] == "ld_first"
    assert "correlation_id" not in second
