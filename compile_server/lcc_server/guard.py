"""ASGI middleware in front of every route: bearer token, body caps, request metrics.

In this order, before the application sees a request:

0. **Framing**: a request with two Authorization headers, or with both
   Content-Length and Transfer-Encoding, is ambiguous and gets 400.
1. **Token**: when tokens are configured (``lcc_server.tokens``), requests
   other than ``open_paths`` (health check, public keys) need
   ``Authorization: Bearer <token>``; else 401.  The token's ``Caller`` is put
   in ``scope["state"]["caller"]`` (``request.state.caller``; None when the
   service is open).  Checked first, so an anonymous client cannot make the
   server buffer a body.
2. **Body cap**: a body larger than ``body_limit(method, path)`` bytes gets
   413, whether announced by Content-Length or streamed; the body is read
   here (never more than the cap) and replayed to the application.
3. **Metrics**: every response is counted by route template and status.

Error bodies have the service's shape ``{"error": ..., "detail": ...}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from lcc_server.metrics import Metrics
from lcc_server.tokens import Caller, TokenTable

__all__ = ["RequestGuard"]

_PREFIX_ROUTES = (("/v1/artifacts/", "/v1/artifacts/{digest}"),
                  ("/v1/btf/", "/v1/btf/{arch}/{release}"),
                  ("/docs-assets/", "/docs-assets/{file}"))


async def _reply(send, status: int, error: str, detail: str, headers=()) -> None:
    body = json.dumps({"error": error, "detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


def _ambiguous(scope) -> str | None:
    """Why the request's framing or credentials could be read two ways, or None.

    Two Authorization headers (a proxy may check one and this service
    another), or Content-Length with Transfer-Encoding (the request
    smuggling pair: RFC 9112 lets a server refuse it), are refused outright.
    """
    names = [name for name, _ in scope.get("headers", [])]
    if names.count(b"authorization") > 1:
        return "more than one Authorization header; send exactly one"
    if b"content-length" in names and b"transfer-encoding" in names:
        return "both Content-Length and Transfer-Encoding; send one of them"
    return None


class RequestGuard:
    def __init__(self, app, *, tokens: TokenTable, open_paths: frozenset[str],
                 body_limit: Callable[[str, str], int], metrics: Metrics,
                 known_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self._tokens = tokens
        self._open = open_paths
        self._limit = body_limit
        self._metrics = metrics
        self._known = known_paths

    def _endpoint(self, scope) -> str:
        route = scope.get("route")
        if route is not None and getattr(route, "path", None):
            return route.path
        path = scope.get("path", "")
        if path in self._known or path in self._open:
            return path
        for prefix, template in _PREFIX_ROUTES:
            if path.startswith(prefix):
                return template
        return "other"  # keeps label cardinality bounded whatever paths are probed

    def _caller(self, scope) -> Caller | None:
        """The caller of the request's bearer token, or None."""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, given = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    return self._tokens.match(given.strip())
        return None

    def _authorized(self, scope) -> bool:
        caller = self._caller(scope) if self._tokens else None
        scope.setdefault("state", {})["caller"] = caller
        return not self._tokens or scope.get("path") in self._open or caller is not None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [500]

        async def send_counted(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            ambiguous = _ambiguous(scope)
            if ambiguous:
                await _reply(send_counted, 400, "invalid_request", ambiguous)
                return
            if not self._authorized(scope):
                await _reply(send_counted, 401, "unauthorized",
                             "missing or wrong bearer token; set LCC_TOKEN for the client",
                             [(b"www-authenticate", b"Bearer")])
                return
            if scope["method"] in ("POST", "PUT", "PATCH"):
                receive = await self._buffered(scope, receive, send_counted)
                if receive is None:
                    return
            await self.app(scope, receive, send_counted)
        finally:
            self._metrics.requests.labels(self._endpoint(scope), str(status[0])).inc()

    async def _buffered(self, scope, receive, send):
        """A receive() replaying the whole body, or None after answering 413
        (or when the client went away)."""
        limit = self._limit(scope["method"], scope.get("path", ""))
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    announced = int(value)
                except ValueError:
                    await _reply(send, 400, "invalid_request", "bad Content-Length")
                    return None
                if announced > limit:
                    await _reply(send, 413, "too_large",
                                 f"request body of {announced} bytes exceeds {limit} bytes")
                    return None
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            if len(body) > limit:
                await _reply(send, 413, "too_large", f"request body exceeds {limit} bytes")
                return None
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()
        return replay
