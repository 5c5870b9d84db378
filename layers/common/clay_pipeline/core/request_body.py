"""Reading a request's raw bytes as JSON: size, content type and syntax, each refused with a clear reason.

The checks run cheapest first, before anything is stored: a body over its limit is refused before it is
parsed (parsing megabytes of nesting costs an unauthenticated caller nothing and us CPU and memory).
"""

from __future__ import annotations

import json
from typing import Any

from clay_pipeline.core.errors import BadRequest, TooLarge, UnsupportedContentType

JSON_CONTENT_TYPES = ("application/json", "text/json")


def check_size(body: bytes, limit: int) -> None:
    if len(body) > limit:
        raise TooLarge(f"body is {len(body)} bytes; the limit is {limit}", reason="oversize")


def check_content_type(headers: dict[str, str]) -> None:
    """No content type, or a JSON one (`application/json`, `text/json`, `*+json`), with any parameters."""
    declared = headers.get("content-type", "").split(";")[0].strip().lower()
    if declared and not (declared in JSON_CONTENT_TYPES or declared.endswith("+json")):
        raise UnsupportedContentType(
            f"content type {declared[:100]} is not supported; send application/json", reason="content_type"
        )


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise BadRequest("body is empty; send a JSON object", reason="empty")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("body is not UTF-8 text", reason="encoding") from None
    try:
        # NaN and Infinity are Python's extensions, not JSON: no store or destination takes them.
        return json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        raise BadRequest("body is nested too deeply to read", reason="too_deep") from None
    except json.JSONDecodeError as error:
        raise BadRequest(
            f"body is not valid JSON: {error.msg} at position {error.pos}", reason="malformed_json"
        ) from None
    except ValueError as error:
        raise BadRequest(f"body is not valid JSON: {error}", reason="malformed_json") from None


def json_object(document: Any) -> dict[str, Any]:
    """The document when it is a JSON object; 400 naming what it is instead."""
    if not isinstance(document, dict):
        raise BadRequest(f"body must be a JSON object, not {type(document).__name__}", reason="not_object")
    return document
