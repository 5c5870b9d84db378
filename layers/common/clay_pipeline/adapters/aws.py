"""boto3 clients, created lazily once per process and reused across invocations.

Every client comes from one boto3 Session: a Session loads the endpoint rules, retry
settings and data-file loaders once and shares them, while a Session per client would load
them again for each service (measured by bench/cold_start.py: about a quarter of the
callback's cold start).

boto3 honours AWS_ENDPOINT_URL itself, which is how the local stack points every client
at its emulator. Timeouts are short so a slow dependency fails the request (and the
message is retried) instead of eating the whole function timeout. Client-side parameter
validation is off: DynamoDB and SQS validate every request themselves, and botocore's walk
over the router's outcome maps cost more CPU than the rest of its write (bench/warm_path.py).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

_CONFIG_KWARGS = {
    "connect_timeout": 3,
    "read_timeout": 5,
    "retries": {"max_attempts": 3, "mode": "standard"},
    "max_pool_connections": 50,
    "parameter_validation": False,
}


@functools.cache
def _session() -> Any:
    import boto3

    return boto3.session.Session()


# Clients are thread-safe, but creating them from one Session is not: the router's delivery
# threads and the local stack's concurrent instances may ask for a client at the same time.
_creating = threading.Lock()


@functools.cache
def client(service: str) -> Any:
    from botocore.config import Config

    with _creating:
        return _session().client(service, config=Config(**_CONFIG_KWARGS))


def reset_clients() -> None:
    """Forget cached clients and their session (tests that switch endpoints or credentials)."""
    client.cache_clear()
    _session.cache_clear()
