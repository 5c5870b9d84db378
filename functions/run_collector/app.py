"""RunCollectorFunction: RunPollQueue messages read routine runs' results into routing messages."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext

from clay_pipeline.config import RunCollectorSettings
from clay_pipeline.observability import log_metrics, logger, tracer
from clay_pipeline.run_collector import RunCollector

settings = RunCollectorSettings.from_env()  # fails the cold start on bad configuration
collector = RunCollector(settings)
# A message whose dependency failed is retried by SQS; the others of the batch are done.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@logger.inject_lambda_context(log_event=False, clear_state=True)
@log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    collector.register_context(context)
    response = process_partial_response(
        event=event, record_handler=collector.process, processor=processor, context=context
    )
    return dict(response)
