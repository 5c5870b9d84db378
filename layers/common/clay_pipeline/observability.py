"""One place for logging, metrics and tracing (Powertools).

The service name comes from POWERTOOLS_SERVICE_NAME, set per function in template.yaml.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

NAMESPACE = "ClayPipeline"

logger = Logger(log_uncaught_exceptions=True)
metrics = Metrics(namespace=NAMESPACE)
tracer = Tracer()

__all__ = ["NAMESPACE", "MetricUnit", "count", "logger", "metrics", "tracer"]


def count(name: str, value: float = 1, **dimensions: str) -> None:
    """Add a Count metric; dimensions (e.g. reason="oversize") go on a metric of their own."""
    if not dimensions:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        return
    with single_metric(name=name, unit=MetricUnit.Count, value=value, namespace=NAMESPACE) as metric:
        for key, dimension_value in dimensions.items():
            metric.add_dimension(name=key, value=dimension_value)
