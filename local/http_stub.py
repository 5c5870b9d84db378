"""A recording HTTP server on loopback: stands in for Clay, HubSpot, Slack and webhooks.

Tests script its answers per path (status, headers, body, delay); everything it receives
is recorded with its arrival time, so assertions are made on what the server saw, not on
how long the test took.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float  # time.monotonic()
    query: str = ""  # the raw query string, without the '?'

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=lambda: {"ok": True})
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (slow dependency)


Responder = Callable[[RecordedRequest], Reply]


def answering_together(parties: int, timeout: float, reply: Reply) -> Responder:
    """A responder that answers `reply` only once `parties` requests are in flight at the same time, and 503
    when they came one after another (the first waits `timeout` in vain): proves requests are concurrent."""
    together = threading.Barrier(parties, timeout=timeout)

    def respond(request: RecordedRequest) -> Reply:
        try:
            together.wait()
        except threading.BrokenBarrierError:
            return Reply(503)
        return reply

    return respond


def loopback_server(handle: Callable[[BaseHTTPRequestHandler], None]) -> tuple[ThreadingHTTPServer, str]:
    """A quiet ThreadingHTTPServer bound to a free port on 127.0.0.1, handing every request, whatever its
    method, to `handle`; and its URL. It serves once `serve_in_background` is called."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            handle(self)

        do_PUT = do_PATCH = do_GET = do_DELETE = do_POST

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    return server, f"http://{host!s}:{port}"


def serve_in_background(server: ThreadingHTTPServer) -> threading.Thread:
    # A short poll interval makes shutdown() quick, so every test can have its own server.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return thread


class Served(ABC):
    """`with server:` starts a local server or simulator and stops it after, whatever its start and stop do."""

    @abstractmethod
    def start(self) -> object: ...

    @abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class StubServer(Served):
    """ThreadingHTTPServer on 127.0.0.1 with scripted replies and a request log."""

    def __init__(self, responder: Responder | None = None) -> None:
        self.responder: Responder = responder or (lambda request: Reply())
        self.requests: list[RecordedRequest] = []
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- scripting -------------------------------------------------------------------------
    def script(self, path: str, *replies: Reply) -> None:
        """Answer the next requests to `path` with these replies, in order, then fall back to the responder."""
        with self._lock:
            self._scripts[path].extend(replies)

    def received(self, path: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self._scripts.clear()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> str:
        self._server, self.url = loopback_server(self._handle)
        self._thread = serve_in_background(self._server)
        return self.url

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    # -- handling --------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else b""
        path, _, query = handler.path.partition("?")
        request = RecordedRequest(
            method=handler.command,
            path=path,
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
            received_at=time.monotonic(),
            query=query,
        )
        with self._lock:
            self.requests.append(request)
            scripted = self._scripts[path].popleft() if self._scripts.get(path) else None
        reply = scripted or self.responder(request)
        if reply.delay:
            time.sleep(reply.delay)
        payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        try:
            handler.send_response(reply.status)
            handler.send_header("content-type", "application/json")
            handler.send_header("content-length", str(len(payload)))
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout): nothing to answer


class DrippingServer:
    """A destination that reads each request, sends its status line and headers at once, then its body one
    byte per `interval` seconds: every read is quick, so only a deadline on the whole answer ends it."""

    def __init__(self, body_bytes: int = 100, interval: float = 0.4) -> None:
        self.body_bytes = body_bytes
        self.interval = interval
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> DrippingServer:
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            self.received.append(connection.recv(65536))
            head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {self.body_bytes}\r\n\r\n"
            connection.sendall(head.encode())
            for _ in range(self.body_bytes):
                if self._stop.wait(self.interval):
                    return
                try:
                    connection.sendall(b" ")
                except OSError:
                    return
