"""The ASGI layer around every request: token, body limit, timeout, metrics, one log line.

Pure ASGI (no BaseHTTPMiddleware), because it runs on every request. It also turns any
exception a handler lets through into a one-line JSON 500, so no traceback reaches a
client. Case paths are re-quoted here: the server decodes `%2F` in the path before
routing, so `/v1/cases/a%2Fb/thumbnail` would otherwise route as the case `a`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medcap.serve.auth import bearer_matches, needs_token
from medcap.serve.metrics import UNMATCHED, ServiceMetrics
from medcap.serve.settings import ServeOptions

LOG = logging.getLogger("medcap.serve.requests")
CASES = "/v1/cases/"


class BodyTooLargeError(Exception):
    """A request body over `serve.max_upload_bytes` (a 413), found while reading it."""


def json_body(message: str) -> bytes:
    """`{"error": "..."}` with the message on one line."""
    return json.dumps({"error": " ".join(message.split())}, separators=(",", ":")).encode()


def case_route_path(scope: Scope) -> str | None:
    """The routing path of a case URL with the image_id re-quoted, from the raw path."""
    raw: bytes = scope.get("raw_path") or quote(scope["path"]).encode()
    parts = raw.split(b"/")  # b"", b"v1", b"cases", image_id[, b"thumbnail"]
    if len(parts) not in (4, 5) or not parts[3] or (len(parts) == 5 and parts[4] != b"thumbnail"):
        return None
    image_id = unquote_to_bytes(parts[3]).decode("utf-8", "replace")
    return CASES + quote(image_id, safe="") + ("/thumbnail" if len(parts) == 5 else "")


def logged_path(scope: Scope) -> str:
    """The path, with only the names of query parameters (values may hold query text)."""
    query = scope.get("query_string", b"").decode("latin-1")
    names = sorted({part.partition("=")[0] for part in query.split("&") if part})
    return str(scope["path"]) + ("?" + "&".join(names) if names else "")


class ServiceMiddleware:
    """Token check, upload limit, request timeout, metrics and the per-request log line."""

    def __init__(
        self,
        app: ASGIApp,
        options: ServeOptions,
        metrics: ServiceMetrics,
        routes: Sequence[BaseRoute] = (),
    ) -> None:
        self.app = app
        self.routes = routes  # to name the endpoint of a request refused before routing
        self.options = options
        self.metrics = metrics
        self.max_body = options.cfg.max_upload_bytes
        self.timeout_s = options.cfg.request_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        if scope["path"].startswith(CASES):
            routed = case_route_path(scope)
            if routed is not None:
                scope = {**scope, "path": routed}
        response: dict[str, Any] = {"status": 0}

        async def send_tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
            await send(message)

        self.metrics.in_progress.inc()
        try:
            status, error = self._refuse(scope)
            if error is None:
                status, error = await self._answer(scope, self._limited(receive), send_tracked)
            if error is not None and response["status"] == 0:
                await _send_error(send_tracked, status, error, self._headers(status))
        finally:
            self.metrics.in_progress.dec()
            self._record(scope, response["status"] or 500, start)

    def _refuse(self, scope: Scope) -> tuple[int, str | None]:
        """A status and message when the request is refused before it is read."""
        headers = dict(scope["headers"])
        token = self.options.token
        needed = token is not None and needs_token(scope["path"])
        if needed and not bearer_matches(headers.get(b"authorization"), token or ""):
            return 401, "missing or wrong bearer token; send 'Authorization: Bearer TOKEN'"
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return 413, self._too_large(int(length))
        return 0, None

    def _too_large(self, size: int | None = None) -> str:
        given = f" ({size:,} bytes)" if size is not None else ""
        return (
            f"the request body is larger than {self.max_body:,} bytes{given} "
            "(serve.max_upload_bytes); send a smaller image"
        )

    def _headers(self, status: int) -> list[tuple[bytes, bytes]]:
        return [(b"www-authenticate", b"Bearer")] if status == 401 else []

    def _limited(self, receive: Receive) -> Receive:
        """`receive` that stops a body (chunked or lying about its length) past the limit."""
        seen = 0

        async def receive_limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLargeError
            return message

        return receive_limited

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> tuple[int, str | None]:
        """Run the app under the request timeout; a status and message when it failed."""
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.app(scope, receive, send)
        except TimeoutError:
            return 504, (
                f"the request took longer than {self.timeout_s:g} s "
                "(serve.request_timeout_s); retry, or ask for less"
            )
        except BodyTooLargeError:
            return 413, self._too_large()
        except Exception:  # noqa: BLE001 - the one place a bug becomes a 500, never a traceback
            LOG.exception("error answering %s %s", scope["method"], logged_path(scope))
            return 500, "internal error in the service; the server log has the details"
        return 0, None

    def _endpoint(self, scope: Scope) -> str:
        """The route template that took (or would have taken) the request."""
        route = scope.get("route")
        if route is None:
            route = next((r for r in self.routes if r.matches(scope)[0] == Match.FULL), None)
        return getattr(route, "path", None) or UNMATCHED

    def _record(self, scope: Scope, status: int, start: float) -> None:
        seconds = time.perf_counter() - start
        endpoint = self._endpoint(scope)
        self.metrics.observe_request(scope["method"], endpoint, status, seconds)
        if self.options.cfg.log_requests:
            LOG.info(
                "%s %s %d %.1f ms", scope["method"], logged_path(scope), status, seconds * 1000
            )


async def _send_error(
    send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]]
) -> None:
    body = json_body(message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
