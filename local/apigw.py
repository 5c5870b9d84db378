"""API Gateway HTTP API (payload format 2.0) proxy events, built the way API Gateway builds them."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

TEXT_TYPES = ("application/json", "text/", "application/xml", "application/x-www-form-urlencoded")


def http_event(
    method: str,
    path: str,
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
    query: str = "",
    source_ip: str = "127.0.0.1",
    stage: str = "$default",
) -> dict[str, Any]:
    """Headers are lower-cased and a body that is not declared text is base64-encoded, as API Gateway does."""
    lowered = {name.lower(): value for name, value in (headers or {}).items()}
    raw = body.encode() if isinstance(body, str) else body
    content_type = lowered.get("content-type", "")
    is_text = raw is not None and (not content_type or content_type.startswith(TEXT_TYPES))
    if is_text and raw is not None:
        try:
            encoded: str | None = raw.decode("utf-8")
            is_base64 = False
        except UnicodeDecodeError:
            encoded, is_base64 = base64.b64encode(raw).decode(), True
    else:
        encoded = base64.b64encode(raw).decode() if raw is not None else None
        is_base64 = raw is not None
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method.upper()} {path}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": lowered,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {
                "method": method.upper(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": f"{method.upper()} {path}",
            "stage": stage,
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": is_base64,
    }
    if encoded is not None:
        event["body"] = encoded
    return event
