"""The Clay HTTP API column's "Retry on failure", as Clay University documents it.

Clay University's HTTP API page (clay-run/public-docs, docs/http-api-integration-overview.md,
Step 9), defaults included (RetryPolicy): on by default; status codes 408, 413 and 429 and the
network errors ECONNREFUSED, ECONNRESET and ETIMEDOUT; max retries 1 (1-5); retries fire
immediately, with no delay; the status list can be replaced ("429, 500-503"). Every other answer,
5xx and 409 included, is recorded in the cell and the row is given up. Each call waits at most the
column's response timeout (1,000-100,000 ms; the page gives no default, so the maximum is assumed):
past it the call is ETIMEDOUT.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests

# Clay University, HTTP API, Step 9 "Retry on failure" (clay-run/public-docs, docs/http-api-integration-overview.md).
CLAY_RETRY_STATUS_CODES = "408, 413, 429"
CLAY_RETRY_ERROR_CODES = ("ECONNREFUSED", "ECONNRESET", "ETIMEDOUT")
CLAY_MAX_RETRIES = 1  # configurable 1-5
# The same page bounds the response timeout to 1,000-100,000 ms and states no default: the maximum is assumed.
CLAY_RESPONSE_TIMEOUT_MS = 100_000


def parse_status_codes(text: str) -> frozenset[int]:
    """Clay's "Status codes to retry": comma-separated 4XX/5XX codes, `-` for ranges ("429, 500-503")."""
    codes: set[int] = set()
    for part in (piece.strip() for piece in text.split(",")):
        if not part:
            continue
        first, _, last = part.partition("-")
        low, high = int(first), int(last or first)
        if not 400 <= low <= high <= 599:
            raise ValueError(f"not a 4XX/5XX status code or range: {part!r}")
        codes.update(range(low, high + 1))
    return frozenset(codes)


@dataclass(frozen=True)
class RetryPolicy:
    """The HTTP API column's "Retry on failure" settings, Clay's defaults as defaults."""

    enabled: bool = True
    max_retries: int = CLAY_MAX_RETRIES
    status_codes: str = CLAY_RETRY_STATUS_CODES
    error_codes: tuple[str, ...] = CLAY_RETRY_ERROR_CODES
    response_timeout_ms: int = CLAY_RESPONSE_TIMEOUT_MS

    def __post_init__(self) -> None:
        if not 1 <= self.max_retries <= 5:
            raise ValueError("Clay allows 1-5 max retries")
        if not 1_000 <= self.response_timeout_ms <= 100_000:
            raise ValueError("Clay allows a response timeout of 1,000-100,000 ms")
        parse_status_codes(self.status_codes)

    @property
    def attempts(self) -> int:
        return 1 + (self.max_retries if self.enabled else 0)

    def retries(self, status: int | None, error: str | None) -> bool:
        """Whether Clay retries a call that ended with this status (or this network error, status None)."""
        if not self.enabled:
            return False
        if status is None:
            return error in self.error_codes
        return status in parse_status_codes(self.status_codes)


# What README's "Wire Clay to it" asks users to set on the column (`clay-pipeline clay-setup` prints it,
# the reasons are there): 5xx and 409 retried too, five times, waiting as long as API Gateway does.
RECOMMENDED_RETRY = RetryPolicy(max_retries=5, status_codes="408, 409, 429, 500-504", response_timeout_ms=30_000)


def network_error_code(error: requests.RequestException) -> str:
    """The Node.js error code Clay would see for a failed call (what "Error codes to retry" matches)."""
    text = repr(error)
    if isinstance(error, requests.Timeout):
        return "ETIMEDOUT"
    if "Connection refused" in text or "ConnectionRefusedError" in text:
        return "ECONNREFUSED"
    if "Failed to resolve" in text or "NameResolutionError" in text:
        return "ENOTFOUND"
    return "ECONNRESET" if isinstance(error, requests.ConnectionError) else "EPROTO"
