"""Errors the core raises that are not outcomes of a record: a bad setting, and a request refused.

A `Rejected` request is the caller's mistake or not allowed, never our failure: each kind says why in
domain terms, and `clay_pipeline.http_api` is the one place that maps the kinds to HTTP status codes.
"""

from __future__ import annotations

from typing import Any


class ConfigError(RuntimeError):
    """A setting is missing or invalid; raised at cold start so the deploy fails loudly."""


class Rejected(Exception):
    """A request refused for what it is. `message` and `details` are what the caller is told (no secret,
    no echo of a value it should not see); `reason` is a short code for metrics, never shown to it;
    `retry_after_seconds`, when set, is when the same request may succeed."""

    def __init__(self, message: str, *, reason: str, retry_after_seconds: int | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.retry_after_seconds = retry_after_seconds
        self.details = details

    @property
    def body(self) -> dict[str, Any]:
        """The refusal as one JSON object: {"error": message, **details}."""
        return {"error": self.message, **self.details}


class BadRequest(Rejected):
    """The request cannot be read as what it must be (not JSON, not an object, invalid fields)."""


class Unauthorized(Rejected):
    """The caller did not prove it may call, or nobody may until a secret is fixed: no hint of which."""

    def __init__(self) -> None:
        super().__init__("unauthorized", reason="unauthorized")


class NotFound(Rejected):
    """Nothing answers at this route."""


class TooLarge(Rejected):
    """The request, or what it would become once stored or queued, is over a limit it names."""


class UnsupportedContentType(Rejected):
    """The request declares a content type other than JSON."""


class TooManyAttempts(Rejected):
    """The caller failed too often in a row and is locked out for a while."""
