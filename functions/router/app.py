"""RouterFunction: RoutingQueue batches to the destinations the rules choose, reporting partial batch failures."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from clay_pipeline.config import RouterSettings
from clay_pipeline.observability import log_metrics, logger, tracer
from clay_pipeline.router import LeadRouter

settings = RouterSettings.from_env()  # fails the cold start on bad configuration
router = LeadRouter(settings)  # parses ROUTING_RULES: invalid rules fail the cold start too
# Leads waiting for a destination to recover are a normal answer, not an invocation error.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@logger.inject_lambda_context(log_event=False, clear_state=True)
@log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # HubSpot takes the whole batch in one call, so its upserts happen before the per-record pass.
    router.start([SQSRecord(raw) for raw in event.get("Records", [])], context.get_remaining_time_in_millis())
    response = process_partial_response(
        event=event, record_handler=router.process, processor=processor, context=context
    )
    return dict(response)
