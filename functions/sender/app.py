"""SenderFunction: LeadQueue batches to Clay (a table webhook, or a routine run), reporting partial batch failures."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clay_pipeline import init_done
from clay_pipeline.config import SenderSettings
from clay_pipeline.core.outcomes import Wait
from clay_pipeline.observability import log_metrics, logger, tracer
from clay_pipeline.queue_batch import process_batch, records_of
from clay_pipeline.services.sender import ClaySender

if TYPE_CHECKING:  # the types only: importing Powertools' utilities package costs cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from clay_pipeline.services.routine_sender import RoutineSender

settings = SenderSettings.from_env()  # fails the cold start on bad configuration
# CLAY_ENRICHMENT_PATH: a Clay table's webhook, row by row (table), or runs of a Clay routine (routine).
sender: ClaySender | RoutineSender
if settings.clay_enrichment_path == "routine":
    from clay_pipeline.services.routine_sender import RoutineSender  # the Public API client: only on this path

    sender = RoutineSender(settings)
else:
    sender = ClaySender(settings)


@logger.inject_lambda_context(log_event=False, clear_state=True)
@log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    records = records_of(event)
    if not isinstance(sender, ClaySender):  # the routine path groups the whole batch into runs
        return sender.handle(records, context.get_remaining_time_in_millis())
    sender.start(context.get_remaining_time_in_millis(), records=len(records))
    try:
        # A batch whose every message must wait (Wait) is a normal answer, not an invocation error.
        # Its POSTs go out concurrently, each at its pacing slot (CLAY_SEND_CONCURRENCY in flight).
        return process_batch(records, sender.process, expected=(Wait,), workers=sender.concurrency)
    finally:
        sender.finish()  # budget and pool units reserved for rows not sent go back


init_done()  # the last line of init: the garbage collector, off during it in Lambda, on again
