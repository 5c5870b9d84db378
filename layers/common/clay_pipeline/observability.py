"""One place for logging, metrics and tracing (Powertools).

The service name comes from POWERTOOLS_SERVICE_NAME, set per function in template.yaml.
"""

from __future__ import annotations

import functools
import os
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

NAMESPACE = "ClayPipeline"

logger = Logger(log_uncaught_exceptions=True)
metrics = Metrics(namespace=NAMESPACE)


class _LazyTracer:
    """Powertools Tracer, created on first use, and not at all while tracing is disabled.

    Creating a Tracer imports the X-Ray SDK, whose recorder builds its own botocore client: about
    90 ms of cold start, even with POWERTOOLS_TRACE_DISABLED set (Powertools then imports it to
    switch it off). Lambda's tracing (template parameter TracingMode) records sampled invocations without
    it; the per-call subsegments are opt-in (DetailedTracing), and the callback, which answers
    Clay synchronously, never creates one.
    """

    _tracer: Any = None

    def __getattr__(self, name: str) -> Any:
        if _tracing_disabled():
            return _untraced
        if _LazyTracer._tracer is None:
            from aws_lambda_powertools import Tracer

            _LazyTracer._tracer = Tracer()
        return getattr(_LazyTracer._tracer, name)


def _tracing_disabled() -> bool:
    return os.environ.get("POWERTOOLS_TRACE_DISABLED", "").strip().lower() in ("1", "true", "yes", "on")


def _untraced(function: Any = None, **_options: Any) -> Any:
    """What a Tracer decorator or call does when tracing is off: nothing (used bare or with options)."""
    if callable(function):
        return function
    return lambda decorated: decorated


tracer: Any = _LazyTracer()

__all__ = [
    "NAMESPACE",
    "MetricUnit",
    "count",
    "level",
    "log_metrics",
    "logger",
    "metrics",
    "set_correlation_id",
    "summarize",
    "tracer",
]

# Counts with their own dimensions, summed until the invocation ends: one EMF line per name and
# dimension set per invocation instead of one per event (a Powertools single_metric per call cost
# the router about 0.1 ms of CPU each, several per lead). The router's delivery threads count too.
_dimensioned: defaultdict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
_levels: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
_dimensioned_lock = threading.Lock()


def count(name: str, value: float = 1, **dimensions: str) -> None:
    """Add a Count metric; dimensions (e.g. reason="oversize") go on a metric of their own."""
    if not dimensions:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        return
    with _dimensioned_lock:
        _dimensioned[(name, tuple(sorted(dimensions.items())))] += value


def level(name: str, value: float, **dimensions: str) -> None:
    """A running total (e.g. a webhook's lifetime submissions): the invocation publishes its highest value."""
    key = (name, tuple(sorted(dimensions.items())))
    with _dimensioned_lock:
        _levels[key] = max(value, _levels.get(key, value))


def discard_dimensioned_counts() -> None:
    """Forget counts not yet published (tests that call the library without a handler)."""
    with _dimensioned_lock:
        _dimensioned.clear()
        _levels.clear()
    with _summaries_lock:
        _summaries.clear()


def flush_dimensioned_counts() -> None:
    with _dimensioned_lock:
        pending = {**_dimensioned, **_levels}
        _dimensioned.clear()
        _levels.clear()
    for (name, dimensions), value in pending.items():
        with single_metric(name=name, unit=MetricUnit.Count, value=value, namespace=NAMESPACE) as metric:
            for key, dimension_value in dimensions:
                metric.add_dimension(name=key, value=dimension_value)


# Per-lead outcomes of a batch, logged as one line per outcome when the invocation ends (summarize): the
# line's envelope (timestamp, location, function, request id) is written once per batch, not once per lead.
_summaries: defaultdict[str, dict[str, Any]] = defaultdict(dict)
_summaries_lock = threading.Lock()


def summarize(message: str, lead: str, detail: Any) -> None:
    """Add a lead's outcome to the invocation's `message` line: {"message": ..., "leads": {lead: detail}}."""
    with _summaries_lock:
        _summaries[message][lead] = detail


def flush_summaries() -> None:
    with _summaries_lock:
        pending = dict(_summaries)
        _summaries.clear()
    for message, leads in pending.items():
        logger.info(message, extra={"leads": leads})


def set_correlation_id(value: str | None) -> None:
    """The invocation's correlation id on its log lines (also per thread: see log_metrics)."""
    logger.set_correlation_id(value)
    logger.thread_safe_append_keys(correlation_id=value)


def log_metrics(handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Per invocation, inside Powertools' inject_lambda_context: metrics.log_metrics, publishing the
    dimensioned counts when the invocation ends, and the invocation's log keys kept per thread.

    Lambda runs one invocation per process, where per-thread keys change nothing. The local stack runs
    every function side by side in one process, sharing one logger whose keys the latest invocation
    sets for all; Powertools' thread-safe keys take precedence, so each thread's lines name their own
    service, function, request and correlation id (the router's delivery threads inherit them).
    """

    # The function's service name as its environment had it when the handler was defined (its cold start):
    # in Lambda the logger read the same at import; the local stack's one logger serves every function.
    service = os.environ.get("POWERTOOLS_SERVICE_NAME") or logger.service

    @functools.wraps(handler)
    def publishing(event: Any, context: Any) -> Any:
        logger.remove_keys(list(UNLOGGED_CONTEXT_KEYS))
        logger.thread_safe_append_keys(**_context_keys(context), correlation_id=None, service=service)
        try:
            return handler(event, context)
        finally:
            flush_summaries()
            flush_dimensioned_counts()

    return metrics.log_metrics(publishing)


# Context keys inject_lambda_context adds that each line need not repeat: every function has its own log
# group, and Lambda's platform.report line has the memory size. About 125 bytes of every line.
UNLOGGED_CONTEXT_KEYS = ("function_arn", "function_memory_size")


def _context_keys(context: Any) -> dict[str, Any]:
    """The keys of inject_lambda_context each line keeps (none without a context)."""
    if context is None:
        return {}
    return {"function_name": context.function_name, "function_request_id": context.aws_request_id}
