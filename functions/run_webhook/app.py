"""RunWebhookFunction: Clay's signed run-finished webhook (routine path) queues the run for collection."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clay_pipeline import init_done
from clay_pipeline.config import RunPollSettings
from clay_pipeline.http_api import dispatch, lower_headers, raw_body
from clay_pipeline.observability import count, log_metrics, logger
from clay_pipeline.services.caller_auth import check_environment_secrets
from clay_pipeline.services.run_webhook import RunWebhook

if TYPE_CHECKING:  # the type only: importing Powertools' utilities package costs cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext

settings = RunPollSettings.from_env()  # fails the cold start on bad configuration
check_environment_secrets("CLAY_WEBHOOK_SIGNING_SECRETS")  # and on a signing secret too short to trust
webhook = RunWebhook(settings)


def receive_run_webhook(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    result = webhook.receive(lower_headers(event), raw_body(event))
    outcome = "Test" if result.get("test") else "Duplicate" if result["duplicate"] else "Accepted"
    count(f"RunWebhook{outcome}")
    logger.info("run webhook received", extra={"routine_run_id": result.get("routine_run_id"), "outcome": outcome})
    return 200, result


ROUTES = {"POST /clay/routine-webhook": receive_run_webhook}


@logger.inject_lambda_context(log_event=False, clear_state=True)
@log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dispatch(event, ROUTES, "RunWebhook")


init_done()  # the last line of init: the garbage collector, off during it in Lambda, on again
