"""A local HTTP API: the template's HttpApi routes served as API Gateway v2 proxy events on loopback.

Requests become payload-format-2.0 events (local.apigw.http_event: headers lower-cased,
non-text bodies base64-encoded, requestContext filled) for the function the template names
for that route; the function's answer becomes the HTTP response the way API Gateway maps
it (statusCode, headers, a base64 body decoded, a bare value served as JSON). Unknown
routes get API Gateway's 404 and a handler that raises gets its 500.

Faults can be injected per route (`inject`), standing in for API Gateway throttling or an
outage so callers' retries can be tested.
"""

from __future__ import annotations

import base64
import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler
from typing import Any

from local.apigw import http_event
from local.http_stub import loopback_server, serve_in_background
from local.lambda_runtime import LambdaFunction
from local.template import functions

NOT_FOUND = {"message": "Not Found"}
INTERNAL_ERROR = {"message": "Internal Server Error"}


def http_routes(template: dict[str, Any] | None = None) -> dict[str, str]:
    """'POST /clay/callback' -> 'CallbackFunction' for every HttpApi event in the template."""
    routes = {}
    for logical_id, spec in functions(template).items():
        for event in spec.events.values():
            if event.get("Type") == "HttpApi":
                props = event.get("Properties", {})
                routes[f"{props.get('Method', 'ANY').upper()} {props.get('Path', '/')}"] = logical_id
    return routes


def to_http_response(result: Any) -> tuple[int, dict[str, str], bytes]:
    """API Gateway's mapping of a payload 2.0 answer: a dict with statusCode is used as is, anything else is JSON."""
    if not isinstance(result, dict) or "statusCode" not in result:
        return 200, {"content-type": "application/json"}, json.dumps(result).encode()
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    headers = {str(k).lower(): str(v) for k, v in (result.get("headers") or {}).items()}
    return int(result["statusCode"]), headers, raw


class Gateway:
    """ThreadingHTTPServer on 127.0.0.1; bound at construction so its URL is known before the functions exist."""

    def __init__(self, stage: str = "") -> None:
        self.stage = stage
        self.functions: dict[str, LambdaFunction] = {}
        self.routes: dict[str, str] = {}
        self._faults: dict[str, deque[int]] = {}
        self._lock = threading.Lock()
        self.in_flight = 0
        self.requests = 0
        self._server, self.url = loopback_server(self._handle)
        self._thread: threading.Thread | None = None

    def serve(self, functions_by_id: dict[str, LambdaFunction], routes: dict[str, str] | None = None) -> None:
        self.functions = functions_by_id
        self.routes = routes if routes is not None else http_routes()
        self._thread = serve_in_background(self._server)

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() waits for serve_forever, which may never have started
            self._server.shutdown()
        self._server.server_close()

    def inject(self, route_key: str, *statuses: int) -> None:
        """Answer the next requests to this route with these statuses, without invoking the function."""
        with self._lock:
            self._faults.setdefault(route_key, deque()).extend(statuses)

    # -- handling --------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.in_flight += 1
            self.requests += 1
        try:
            status, headers, body = self._answer(handler)
            try:
                handler.send_response(status)
                for name, value in {**headers, "content-length": str(len(body))}.items():
                    handler.send_header(name, value)
                handler.end_headers()
                handler.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up
        finally:
            with self._lock:
                self.in_flight -= 1

    def _answer(self, handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else None
        path, _, query = handler.path.partition("?")
        if self.stage and path.startswith(f"/{self.stage}/"):
            path = path[len(self.stage) + 1 :]
        route_key = f"{handler.command} {path}"
        logical_id = self.routes.get(route_key) or self.routes.get(f"ANY {path}")
        json_type = {"content-type": "application/json"}
        if logical_id is None or logical_id not in self.functions:
            return 404, json_type, json.dumps(NOT_FOUND).encode()
        with self._lock:
            faults = self._faults.get(route_key)
            fault = faults.popleft() if faults else None
        if fault is not None:
            return fault, {**json_type, "retry-after": "1"}, json.dumps({"message": "injected fault"}).encode()
        event = http_event(
            handler.command,
            path,
            body,
            dict(handler.headers.items()),
            query=query,
            source_ip=str(handler.client_address[0]),
            stage=self.stage or "$default",
        )
        try:
            result = self.functions[logical_id].invoke(event)
        except Exception:  # a handler crash is API Gateway's 500, as in AWS
            return 500, json_type, json.dumps(INTERNAL_ERROR).encode()
        return to_http_response(result)
