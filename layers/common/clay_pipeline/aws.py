"""boto3 clients, created lazily once per process and reused across invocations.

boto3 honours AWS_ENDPOINT_URL itself, which is how the local stack points every client
at its emulator. Timeouts are short so a slow dependency fails the request (and the
message is retried) instead of eating the whole function timeout.
"""

from __future__ import annotations

import functools
from typing import Any

_CONFIG_KWARGS = {
    "connect_timeout": 3,
    "read_timeout": 5,
    "retries": {"max_attempts": 3, "mode": "standard"},
    "max_pool_connections": 50,
}


@functools.cache
def client(service: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(service, config=Config(**_CONFIG_KWARGS))


def reset_clients() -> None:
    """Forget cached clients (tests that switch endpoints or credentials)."""
    client.cache_clear()
