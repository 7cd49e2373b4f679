"""The review web app: a Starlette application over a :class:`~representer.review.session.Review`, served by uvicorn.

Every request must carry the session's token (``?token=…`` in the URL the command prints, or the
``X-Review-Token`` header the page's script sends); without it the answer is 403. Every response
carries the report's content-security policy widened only to the app's own script and API
(:data:`CSP`): nothing is fetched from elsewhere. Bad requests get a 4xx with a one-line message in
JSON (``{"error": …}``), an unexpected failure a 500 with its type and message, never a traceback.

=====================================  =============================================================
route                                  answer
=====================================  =============================================================
``GET /``                              the page (plain HTML; ``review.js`` and ``review.css`` beside it)
``GET /api/state``                     run, ranking route, classes, reviewer, progress
``GET /api/points?class=&decision=``   the ranked points with their current decision, filtered
``GET /api/points/{i}``                one point: item, labels, probabilities, explanations, history
``GET /api/points/{i}/heatmaps?class=``  LRP heat-maps of the point's top pairs (image runs)
``POST /api/decisions``                ``{train_index, decision, new_class?, base, client}`` → the
                                       decision and the progress; 409 if another tab decided the
                                       point since ``base``
=====================================  =============================================================
"""

from __future__ import annotations

import json
import secrets
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import RepresenterError
from ..report.html import _CSS as REPORT_CSS
from .session import Review, UnknownPoint
from .store import DecisionConflict

#: The report's policy (``default-src 'none'; img-src data:``) with the app's own stylesheets, script
#: and API instead of inline styles, and nothing else.
CSP = ("default-src 'none'; img-src data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
TOKEN_HEADER = "X-Review-Token"
_HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
            (b"cache-control", b"no-store"), (b"x-frame-options", b"DENY")]
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
_STATIC = {"review.js": "text/javascript; charset=utf-8", "review.css": "text/css; charset=utf-8",
           "report.css": "text/css; charset=utf-8"}


def new_token() -> str:
    """A fresh per-session token (32 random bytes, URL-safe)."""
    return secrets.token_urlsafe(32)


class _Guard:
    """Refuse requests without the session token (403) and add the security headers to every answer."""

    def __init__(self, app: ASGIApp, token: str):
        self.app, self.token = app, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *_HEADERS]}
            await send(message)

        request = Request(scope)
        given = request.headers.get(TOKEN_HEADER) or request.query_params.get("token") or ""
        if not secrets.compare_digest(given.encode(), self.token.encode()):
            response = _error(403, "This review server needs its session token: open the URL that `representer review` printed.")
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split()), **extra}, status_code=status)


def create_app(review: Review, token: str, *, host: str = "127.0.0.1") -> Starlette:
    """The app over ``review``; requests must carry ``token``. Served on a loopback ``host``, it
    also refuses requests whose ``Host`` header names another machine (DNS rebinding)."""
    page = resources.files(__package__).joinpath("static", "review.html").read_text(encoding="utf-8")
    static = {name: resources.files(__package__).joinpath("static", name).read_bytes() for name in _STATIC if name != "report.css"}
    static["report.css"] = REPORT_CSS.encode()

    def index(request: Request) -> Response:
        return HTMLResponse(page.replace("__TOKEN__", token))

    def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in static:
            raise HTTPException(404, f"no file {name!r} here.")
        return Response(static[name], media_type=_STATIC[name])

    def state(request: Request) -> Response:
        return JSONResponse(review.state())

    def points(request: Request) -> Response:
        query = request.query_params
        return JSONResponse({"points": review.points(given_class=query.get("class") or None, decision=query.get("decision", "all")),
                             "progress": review.progress()})

    def point(request: Request) -> Response:
        return JSONResponse(review.detail(request.path_params["train_index"]))

    def heatmaps(request: Request) -> Response:
        name = request.query_params.get("class")
        if not name:
            raise HTTPException(400, "pass the class to explain: ?class=NAME.")
        return JSONResponse(review.heatmaps(request.path_params["train_index"], name))

    async def decide(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise HTTPException(415, "send the decision as JSON (Content-Type: application/json).")
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as exc:
            raise HTTPException(400, f"the body is not valid JSON ({exc}).") from exc
        if not isinstance(body, dict):
            raise HTTPException(400, "the body must be a JSON object {train_index, decision, new_class?, base, client}.")
        unknown = sorted(set(body) - {"train_index", "decision", "new_class", "base", "client"})
        if unknown:
            raise HTTPException(400, f"unknown fields {unknown}; send train_index, decision, new_class, base and client.")
        index, base = body.get("train_index"), body.get("base")
        if not isinstance(index, int) or isinstance(index, bool):
            raise HTTPException(400, f"train_index must be an integer; got {index!r}.")
        if "base" not in body or not (base is None or (isinstance(base, int) and not isinstance(base, bool))):
            raise HTTPException(400, "base must be the id of the decision you saw on this point, or null if it had none.")
        new_class, client = body.get("new_class"), body.get("client", "")
        if not (new_class is None or isinstance(new_class, str)) or not isinstance(client, str):
            raise HTTPException(400, "new_class must be a class name and client a string.")
        decision = await run_in_threadpool(review.decide, index, str(body.get("decision")), new_class=new_class, base=base,
                                           client=client[:64])
        return JSONResponse({"decision": decision.to_dict(review.classes), "progress": review.progress()})

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, exc.detail)

    async def bad_input(request: Request, exc: Exception) -> Response:
        if isinstance(exc, DecisionConflict):
            return _error(409, str(exc), current=None if exc.current is None else exc.current.to_dict(review.classes))
        return _error(400, str(exc))

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(404, str(exc.args[0]) if exc.args else "not found.")

    async def unexpected(request: Request, exc: Exception) -> Response:
        return _error(500, f"unexpected {type(exc).__name__}: {exc}")

    routes = [
        Route("/", index), Route("/static/{name}", asset), Route("/api/state", state), Route("/api/points", points),
        Route("/api/points/{train_index:int}", point), Route("/api/points/{train_index:int}/heatmaps", heatmaps),
        Route("/api/decisions", decide, methods=["POST"]),
    ]
    middleware = [Middleware(_Guard, token=token)]
    if host in _LOOPBACK:
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]", "::1"]))
    handlers = {HTTPException: http_error, UnknownPoint: not_found, RepresenterError: bad_input, Exception: unexpected}
    return Starlette(routes=routes, middleware=middleware, exception_handlers=handlers)  # type: ignore[arg-type]
