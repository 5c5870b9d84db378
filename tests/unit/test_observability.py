"""Dimensioned counts are summed per invocation and published once per name and dimension set."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from clay_pipeline.observability import count, level, log_metrics

pytestmark = pytest.mark.unit


def emf_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith('{"_aws"')]


def value(line: dict[str, Any], name: str) -> float:
    """EMF writes a metric's value as a list of the values added."""
    return float(sum(line[name]))


def test_dimensioned_counts_are_summed_and_published_when_the_invocation_ends(
    capsys: pytest.CaptureFixture[str],
) -> None:
    published_during: list[list[dict[str, Any]]] = []

    @log_metrics
    def handler(event: dict[str, Any], context: Any) -> str:
        # GIVEN three deliveries to one destination and one to another within one invocation
        for _ in range(3):
            count("DeliverySucceeded", destination="zapier")
        count("DeliverySucceeded", destination="slack")
        count("RouterRouted")
        published_during.append(emf_lines(capsys.readouterr().out))
        return "done"

    # WHEN the invocation ends
    assert handler({}, None) == "done"
    lines = emf_lines(capsys.readouterr().out)
    # THEN nothing was published while it ran, and afterwards one line per destination holds the sum
    assert published_during == [[]]
    per_destination = {line["destination"]: value(line, "DeliverySucceeded") for line in lines if "destination" in line}
    assert per_destination == {"zapier": 3.0, "slack": 1.0}
    # AND the dimensionless count went out with the invocation's own metric set
    assert [value(line, "RouterRouted") for line in lines if "RouterRouted" in line] == [1.0]


def test_counts_of_a_failed_invocation_are_still_published(capsys: pytest.CaptureFixture[str]) -> None:
    @log_metrics
    def handler(event: dict[str, Any], context: Any) -> None:
        count("RouterDeadLettered", reason="permanent_failure")
        raise RuntimeError("boom")

    # WHEN the handler raises
    with pytest.raises(RuntimeError, match="boom"):
        handler({}, None)
    # THEN the count made before the error is published, and the next invocation does not repeat it
    first = [line for line in emf_lines(capsys.readouterr().out) if "reason" in line]
    assert [(line["reason"], value(line, "RouterDeadLettered")) for line in first] == [("permanent_failure", 1.0)]

    @log_metrics
    def quiet(event: dict[str, Any], context: Any) -> None:
        count("Other")

    quiet({}, None)
    assert not [line for line in emf_lines(capsys.readouterr().out) if "reason" in line]


def test_a_level_publishes_its_highest_value_not_a_sum(capsys: pytest.CaptureFixture[str]) -> None:
    @log_metrics
    def handler(event: dict[str, Any], context: Any) -> None:
        # GIVEN a webhook's lifetime submissions reported after each send, out of order across threads
        for submissions in (41, 43, 42):
            level("ClayWebhookUsage", submissions, webhook="0")

    # WHEN the invocation ends
    handler({}, None)
    # THEN one line carries the highest running total
    lines = [line for line in emf_lines(capsys.readouterr().out) if "ClayWebhookUsage" in line]
    assert [(line["webhook"], value(line, "ClayWebhookUsage")) for line in lines] == [("0", 43.0)]


# ------------------------------------------------------------------------------------- tracing
def test_with_tracing_disabled_the_tracer_decorates_nothing_and_never_loads_the_xray_sdk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from clay_pipeline.observability import tracer

    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.delitem(sys.modules, "aws_xray_sdk", raising=False)
    monkeypatch.delitem(sys.modules, "aws_xray_sdk.core", raising=False)

    def handler(event: Any, context: Any) -> str:
        return "handled"

    assert tracer.capture_lambda_handler(handler) is handler
    assert tracer.capture_method(capture_response=False)(handler) is handler
    assert "aws_xray_sdk.core" not in sys.modules


def test_per_lead_outcomes_are_one_line_per_batch_without_the_repeated_context_keys() -> None:
    from clay_pipeline.observability import logger, summarize

    class Context:
        function_name = "RouterFunction"
        memory_limit_in_mb = 128
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:RouterFunction"
        aws_request_id = "request-1"

    logged_meanwhile: list[str] = []

    @logger.inject_lambda_context(log_event=False, clear_state=True)
    @log_metrics
    def handler(event: dict[str, Any], context: Any) -> None:
        # GIVEN three leads of one batch routed and one skipped
        for lead in ("ld_a", "ld_b", "ld_c"):
            summarize("leads routed", lead, {"destinations": {"zapier": "delivered"}})
        summarize("leads skipped", "ld_d", {"skipped_reason": "no_destination"})
        logged_meanwhile.append(stream.getvalue())

    # WHEN the invocation ends
    stream = io.StringIO()
    previous = logger.registered_handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        handler({}, Context())
    finally:
        logger.registered_handler.setStream(previous)  # type: ignore[attr-defined]
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    # THEN nothing was logged per lead meanwhile, and one line per outcome names every lead of the batch
    assert logged_meanwhile == [""]
    by_message = {line["message"]: line for line in lines}
    assert set(by_message["leads routed"]["leads"]) == {"ld_a", "ld_b", "ld_c"}
    assert by_message["leads skipped"]["leads"] == {"ld_d": {"skipped_reason": "no_destination"}}
    # AND the lines keep the function and request but not what the log group and platform lines already say
    assert by_message["leads routed"]["function_request_id"] == "request-1"
    assert "function_arn" not in by_message["leads routed"]
    assert "function_memory_size" not in by_message["leads routed"]
