"""CallbackFunction: Clay's HTTP API column POSTs enriched rows here (and asks /clay/token for a JWT)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clay_pipeline import init_done
from clay_pipeline.adapters.state_table import StateStore
from clay_pipeline.config import CallbackSettings
from clay_pipeline.core.errors import Unauthorized
from clay_pipeline.http_api import dispatch, lower_headers, raw_body
from clay_pipeline.observability import count, log_metrics, logger, set_correlation_id
from clay_pipeline.services.callback import CallbackAcceptor, authenticate, check_configuration, parse_callback
from clay_pipeline.services.token_guard import TokenGuard, issue_token

if TYPE_CHECKING:  # the type only: importing Powertools' utilities package costs cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext

settings = CallbackSettings.from_env()  # fails the cold start on bad configuration
check_configuration(settings)  # and on a callback secret or JWT user too weak to trust
acceptor = CallbackAcceptor(settings)
token_guard = TokenGuard(StateStore(settings.state_table)) if settings.state_table else None


def receive_callback(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    headers, body = lower_headers(event), raw_body(event)
    authenticate(settings, headers, body)
    request = parse_callback(settings, headers, body)
    set_correlation_id(request.lead_key)
    result = acceptor.accept(request)
    if request.warnings:  # the columns kept as sent and treated as missing (a duplicate has the same)
        result["warnings"] = request.warnings
    count("CallbackDuplicate" if result["duplicate"] else "CallbackAccepted")
    # One line per request; the lead key is its correlation_id, the columns set aside only when there are some.
    unreadable = [warning["field"] for warning in request.warnings]
    extra = {"unreadable_columns": unreadable} if unreadable else {}
    logger.info("callback accepted", extra={"duplicate": result["duplicate"], **extra})
    return 200, result


def token(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    if settings.callback_auth_mode != "jwt":
        raise Unauthorized()
    source_ip = str((event.get("requestContext") or {}).get("http", {}).get("sourceIp", ""))
    return 200, issue_token(raw_body(event), source_ip, token_guard)


ROUTES = {"POST /clay/callback": receive_callback, "POST /clay/token": token}


@logger.inject_lambda_context(log_event=False, clear_state=True)
@log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    count("CallbackReceived")
    acceptor.register_context(context)
    return dispatch(event, ROUTES, "Callback")


init_done()  # the last line of init: the garbage collector, off during it in Lambda, on again
