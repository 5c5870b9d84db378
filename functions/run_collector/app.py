"""RunCollectorFunction: RunPollQueue messages read routine runs' results into routing messages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clay_pipeline import init_done
from clay_pipeline.config import RunCollectorSettings
from clay_pipeline.observability import log_metrics, logger, tracer
from clay_pipeline.queue_batch import process_batch, records_of
from clay_pipeline.services.run_collector import RunCollector

if TYPE_CHECKING:  # the type only: importing Powertools' utilities package costs cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext

settings = RunCollectorSettings.from_env()  # fails the cold start on bad configuration
collector = RunCollector(settings)


@logger.inject_lambda_context(log_event=False, clear_state=True)
@log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    collector.register_context(context)
    # A message whose dependency failed is retried by SQS; the others of the batch are done.
    return process_batch(records_of(event), collector.process)


init_done()  # the last line of init: the garbage collector, off during it in Lambda, on again
