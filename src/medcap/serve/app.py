"""The FastAPI application: routes, the request middleware, and one-line JSON refusals.

Every refusal is `{"error": "<one line>"}` with a 4xx/5xx status; the process keeps
serving. medcap errors map to statuses here, in one place.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from medcap import __version__
from medcap.errors import InputError, MedcapError, first_line
from medcap.serve.engine import CaseNotFoundError
from medcap.serve.middleware import ServiceMiddleware
from medcap.serve.routes import router
from medcap.serve.service import NotReadyError, Service
from medcap.serve.settings import ServeOptions
from medcap.serve.uploads import UnsupportedBodyError

# most specific first: the first class an exception is an instance of gives its status
_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (CaseNotFoundError, 404),
    (UnsupportedBodyError, 415),
    (InputError, 400),
    (NotReadyError, 503),
    (MedcapError, 500),  # a backend or artifact problem of the server, not of the request
)


def error_response(status: int, message: str) -> JSONResponse:
    """`{"error": message}` on one line."""
    return JSONResponse({"error": " ".join(message.split())}, status_code=status)


async def _medcap_error(request: Request, exc: Exception) -> JSONResponse:
    status = next(code for kind, code in _STATUS if isinstance(exc, kind))
    return error_response(status, str(exc))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no endpoint {request.method} {request.url.path}; see /docs"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}; see /docs"
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, message)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    where = ".".join(str(p) for p in errors[0].get("loc", ())) if errors else "request"
    reason = errors[0].get("msg", "invalid") if errors else first_line(exc)
    return error_response(400, f"{where}: {reason}")


def create_app(options: ServeOptions) -> FastAPI:
    """The service for `options` (loads its index in the background once started).

    >>> uvicorn.run(create_app(ServeOptions(Path("runs/index"))), port=8600)
    """
    service = Service(options)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="medcap",
        version=__version__,
        summary="Similar radiology cases and retrieval-augmented captions over one index.",
        lifespan=lifespan,
        redoc_url=None,  # one API page: /docs
    )
    app.state.service = service
    # the routes themselves, not an included router: the middleware names the endpoint of a
    # request it refuses before routing by matching these
    app.router.routes.extend(router.routes)
    app.add_middleware(
        ServiceMiddleware, options=options, metrics=service.metrics, routes=app.router.routes
    )
    for kind in (MedcapError, NotReadyError):
        app.add_exception_handler(kind, _medcap_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    return app
