"""SenderFunction: LeadQueue batches to Clay (a table webhook, or a routine run), reporting partial batch failures."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext

from clay_pipeline.config import SenderSettings
from clay_pipeline.observability import log_metrics, logger, tracer
from clay_pipeline.routine_sender import RoutineSender
from clay_pipeline.sender import ClaySender

settings = SenderSettings.from_env()  # fails the cold start on bad configuration
# CLAY_ENRICHMENT_PATH: a Clay table's webhook, row by row (table), or runs of a Clay routine (routine).
sender = RoutineSender(settings) if settings.clay_enrichment_path == "routine" else ClaySender(settings)
# A batch whose every message must wait is a normal answer, not an invocation error.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@logger.inject_lambda_context(log_event=False, clear_state=True)
@log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if isinstance(sender, RoutineSender):  # groups the whole batch into runs
        return sender.handle(event, context.get_remaining_time_in_millis())
    sender.start(context.get_remaining_time_in_millis(), records=len(event.get("Records", [])))
    try:
        response = process_partial_response(
            event=event, record_handler=sender.process, processor=processor, context=context
        )
    finally:
        sender.finish()  # budget and pool units reserved for rows not sent go back
    return dict(response)
