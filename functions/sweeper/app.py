"""StaleSweeperFunction: on a schedule, marks leads sent to Clay with no callback after STALE_AFTER_HOURS."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clay_pipeline import init_done
from clay_pipeline.config import SweeperSettings
from clay_pipeline.observability import log_metrics, logger, tracer
from clay_pipeline.services.sweeper import StaleSweeper

if TYPE_CHECKING:  # the type only: importing Powertools' utilities package costs cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext

settings = SweeperSettings.from_env()  # fails the cold start on bad configuration
sweeper = StaleSweeper(settings)


@logger.inject_lambda_context(log_event=False, clear_state=True)
@log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The EventBridge event carries nothing the sweep needs: its window comes from the checkpoint.
    return sweeper.run().to_dict()


init_done()  # the last line of init: the garbage collector, off during it in Lambda, on again
