"""The dashboard's ASGI application: its routes, guard and error pages."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from xmanager.client.connection import Launcher, LauncherUnavailableError
from xmanager.ui import api, live, pages
from xmanager.ui.auth import Guard
from xmanager.ui.gateway import Gateway
from xmanager.ui.guard_middleware import GuardMiddleware
from xmanager.ui.watches import Watches
from xmanager.ui.web import STATIC_DIR, TEMPLATES, Assets, csrf_token, rpc_error

_UNIT = "/experiments/{experiment_id}/units/{work_unit_id}"


def _routes() -> list[Route | Mount]:
    return [
        Route("/login", pages.login, methods=["GET", "POST"]),
        Route("/", pages.experiments),
        Route("/experiments/{experiment_id}", pages.experiment),
        Route(f"{_UNIT}/logs", pages.logs),
        Route(f"{_UNIT}/logs/download", live.download_log),
        Route("/api/experiments/{experiment_id}/units", api.units),
        Route("/api/experiments/{experiment_id}/timeline", api.timeline),
        Route("/api/experiments/{experiment_id}/chart", api.chart),
        Route("/api/experiments/{experiment_id}/events", live.unit_events),
        Route("/api/experiments/{experiment_id}/annotations", api.annotate, methods=["POST"]),
        Route("/api/experiments/{experiment_id}/cancel", api.cancel_experiment, methods=["POST"]),
        Route(f"/api{_UNIT}/cancel", api.cancel_unit, methods=["POST"]),
        Route(f"/api{_UNIT}/logs", api.log_window),
        Route(f"/api{_UNIT}/logs/follow", live.follow_log),
        Mount("/static", Assets(directory=str(STATIC_DIR)), name="static"),
    ]


def _error(request: Request, status: int, message: str) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=status)
    return TEMPLATES.TemplateResponse(
        request,
        "error.html",
        {"status": status, "message": message, "csrf": csrf_token(request)},
        status_code=status,
    )


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    message = error.detail
    if error.status_code == 404 and message == "Not Found":
        message = f"no page at {request.url.path}"
    elif error.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    return _error(request, error.status_code, message)


async def _rpc_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, grpc.RpcError)
    http = rpc_error(error)
    return _error(request, http.status_code, http.detail)


async def _unavailable(request: Request, error: Exception) -> Response:
    return _error(request, 503, str(error))


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    app.state.watches.stop_all()  # their gRPC streams end with the server


def create_app(launcher: Launcher, guard: Guard, *, allow_remote: bool = False) -> Starlette:
    """The dashboard for the daemon `launcher` talks to."""
    app = Starlette(
        lifespan=_lifespan,
        routes=_routes(),
        middleware=[Middleware(GuardMiddleware, guard=guard, allow_remote=allow_remote)],
        exception_handlers={
            HTTPException: _http_error,
            grpc.RpcError: _rpc_error,
            LauncherUnavailableError: _unavailable,
        },
    )
    app.state.gateway = Gateway(launcher)
    app.state.watches = Watches(app.state.gateway)
    app.state.guard = guard
    return app
