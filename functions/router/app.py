"""RouterFunction: RoutingQueue batches to the destinations the rules choose, reporting partial batch failures."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clay_pipeline import init_done
from clay_pipeline.config import RouterSettings
from clay_pipeline.core.outcomes import Wait
from clay_pipeline.observability import log_metrics, logger, tracer
from clay_pipeline.queue_batch import process_batch, records_of
from clay_pipeline.services.router import LeadRouter

if TYPE_CHECKING:  # the type only: importing Powertools' utilities package costs cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext

settings = RouterSettings.from_env()  # fails the cold start on bad configuration
router = LeadRouter(settings)  # parses ROUTING_RULES: invalid rules fail the cold start too


@logger.inject_lambda_context(log_event=False, clear_state=True)
@log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # A batched CRM takes the whole batch in few calls and webhooks go out together: sends happen before the
    # per-record pass. Leads waiting in the queue (Wait) are a normal answer, not an error.
    records = records_of(event)
    batch = router.start(records, context.get_remaining_time_in_millis())
    return process_batch(records, batch.process, expected=(Wait,))


init_done()  # the last line of init: the garbage collector, off during it in Lambda, on again
