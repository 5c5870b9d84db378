"""Outbound HTTP shared by the Clay client and the destinations: sessions, retries, failure reading."""

from __future__ import annotations

from typing import TYPE_CHECKING

from urllib3.exceptions import InvalidHeader, ReadTimeoutError
from urllib3.util.retry import Retry

if TYPE_CHECKING:  # requests is imported on first use: ~27 ms of cold start otherwise
    import requests

DEFAULT_RETRY_AFTER_SECONDS = 10.0


def retrying_session(retry: Retry, pool_size: int) -> requests.Session:
    """A Session whose adapter retries as `retry` says (urllib3), for http and https alike.

    trust_env is off: the functions run without proxies or .netrc, and reading them from the
    environment on every request cost about 75 us of CPU per call (bench/warm_path.py).
    """
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    session.trust_env = False
    adapter = HTTPAdapter(max_retries=retry, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def backoff_retry(
    attempts: int, backoff_seconds: float, methods: frozenset[str], statuses: frozenset[int], read: int = 0
) -> Retry:
    """urllib3 Retry: connection failures for every method, `statuses` (and `read` read errors) for `methods`
    only, with exponential backoff and jitter. Never sleeps on Retry-After: a 503's could exceed the time left."""
    return Retry(
        total=attempts,
        connect=attempts,
        read=read,
        status=attempts,
        other=0,
        redirect=0,
        allowed_methods=methods,
        status_forcelist=statuses,
        backoff_factor=backoff_seconds,
        backoff_jitter=backoff_seconds,
        backoff_max=max(backoff_seconds * 4, 1.0),
        respect_retry_after_header=False,
        raise_on_status=False,
    )


def is_read_timeout(error: requests.RequestException) -> bool:
    """A read timeout however requests reports it: ReadTimeout, or urllib3's MaxRetryError it would not repeat."""
    import requests

    if isinstance(error, requests.exceptions.ReadTimeout):
        return True
    if isinstance(error, requests.exceptions.ConnectionError):
        return isinstance(getattr(error.args[0] if error.args else None, "reason", None), ReadTimeoutError)
    return False


def parse_retry_after(value: str | None) -> float:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); a default when absent or bad."""
    if not value:
        return DEFAULT_RETRY_AFTER_SECONDS
    try:
        return max(0.0, float(value))  # Clay and Slack send whole seconds; fractions are accepted too
    except ValueError:
        pass
    try:
        return max(0.0, float(Retry().parse_retry_after(value)))
    except InvalidHeader:
        return DEFAULT_RETRY_AFTER_SECONDS
