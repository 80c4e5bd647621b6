"""What every route shares: the gateway and guard of the app, parameter parsing, templates,
and turning daemon errors into HTTP answers with the daemon's own message."""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path
from typing import Any

import grpc
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from xmanager.ui.auth import Guard
from xmanager.ui.gateway import Gateway
from xmanager.ui.watches import Watches

_HERE = Path(__file__).parent
TEMPLATES = Jinja2Templates(directory=str(_HERE / "templates"))
STATIC_DIR = _HERE / "static"
# Part of every asset's URL: browsers cache assets for a day and still see a new version at once.
ASSET_VERSION = hashlib.sha256(
    b"".join(path.read_bytes() for path in sorted(STATIC_DIR.iterdir()))
).hexdigest()[:12]
TEMPLATES.env.globals["v"] = ASSET_VERSION


class Assets(StaticFiles):
    """The vendored scripts and styles, cacheable (their URLs carry ASSET_VERSION)."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["cache-control"] = "public, max-age=86400"
        return response


# gRPC status -> HTTP status for errors the browser caused or can act on.
_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.OUT_OF_RANGE: 416,
    grpc.StatusCode.UNAUTHENTICATED: 502,
    grpc.StatusCode.UNAVAILABLE: 503,
}


def gateway(request: Request) -> Gateway:
    value: Gateway = request.app.state.gateway
    return value


def watches(request: Request) -> Watches:
    value: Watches = request.app.state.watches
    return value


def guard(request: Request) -> Guard:
    value: Guard = request.app.state.guard
    return value


def csrf_token(request: Request) -> str:
    session = request.scope.get("state", {}).get("session")
    return guard(request).csrf_token(session) if session else ""


def path_id(request: Request, name: str) -> int:
    """A positive integer path parameter, else 404 naming it."""
    text = request.path_params[name]
    if not str(text).isdigit() or int(text) <= 0:
        raise HTTPException(
            404, f"{name.replace('_', ' ')} {text!r} does not exist: ids are positive integers"
        )
    return int(text)


def int_param(request: Request, name: str, default: int, *, low: int, high: int) -> int:
    """An integer query parameter within [low, high], else 400 naming it and the range."""
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise HTTPException(400, f"parameter {name!r} must be an integer, not {text!r}") from None
    if not low <= value <= high:
        raise HTTPException(
            400, f"parameter {name!r} must be between {low} and {high}, not {value}"
        )
    return value


def rpc_error(error: grpc.RpcError) -> HTTPException:
    code = error.code()
    status = _HTTP_STATUS.get(code, 502)
    return HTTPException(status, f"{error.details()} (daemon: {code.name})")


def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    return TEMPLATES.TemplateResponse(
        request, name, {"csrf": csrf_token(request), **context}, status_code=status
    )


def _when(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


TEMPLATES.env.filters["when"] = _when
