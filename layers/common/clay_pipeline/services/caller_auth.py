"""The secrets a caller must prove it knows (callback secrets, intake API keys, run webhook signing secrets),
read through config: a secret missing or too weak to trust refuses every caller, never fails open.

At cold start only the environment is checked (a weak value there fails the start: no network call while
the function starts); a value in Secrets Manager is read at run time, and a weak or missing one answers
401 to everyone with one error in the log per problem and process.
"""

from __future__ import annotations

from clay_pipeline import config
from clay_pipeline.core import auth
from clay_pipeline.core.errors import ConfigError, Unauthorized
from clay_pipeline.observability import logger

_logged_problems: set[str] = set()


def check_environment_secrets(*names: str) -> None:
    """At cold start: these secrets, when set in the environment, must be strong enough (ConfigError fails
    the start). Values in Secrets Manager are read at run time, not here."""
    for name in names:
        auth.check_secrets(config.secret_list(name, environment_only=True), name)


def refuse_everyone(problem: str, what: str) -> Unauthorized:
    """401 for a caller refused because of our configuration, with one error in the log per problem."""
    if problem not in _logged_problems:
        logger.error(f"{problem}: every {what} is refused until it is fixed")
        _logged_problems.add(problem)
    return Unauthorized()


def secrets_or_unauthorized(name: str, what: str) -> list[str]:
    """The comma-separated secret `name`; 401 when it is empty or one entry is too weak to trust
    (auth.check_secrets)."""
    secrets = config.secret_list(name)
    try:
        problem = "" if secrets else f"{name} is not configured"
        auth.check_secrets(secrets, name)
    except ConfigError as error:
        problem = str(error)
    if problem:
        raise refuse_everyone(problem, what)
    return secrets
