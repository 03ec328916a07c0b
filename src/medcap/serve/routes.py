"""The endpoints: `/v1/search`, `/v1/caption`, `/v1/cases/...`, `/v1/index`, and the probes.

Handlers read the request themselves (one body may be multipart or JSON, and unknown
query names are filters), answer plain dicts, and raise medcap errors that medcap.serve.app
turns into one-line JSON refusals.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from medcap.config import current
from medcap.errors import InputError
from medcap.serve import answers
from medcap.serve.metrics import CONTENT_TYPE
from medcap.serve.params import one_value, parse_k, parse_search
from medcap.serve.service import Service
from medcap.serve.uploads import IMAGE_FIELD, MULTIPART, body_kind, read_image, read_json

router = APIRouter()

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": answers.ErrorAnswer, "description": text}
    for code, text in {
        400: "Bad request (one line says what)",
        401: "Missing or wrong bearer token",
        404: "No such case",
        413: "Body over serve.max_upload_bytes",
        415: "Neither multipart nor JSON",
        503: "Index still loading, failed to load, or overloaded",
        504: "Took longer than serve.request_timeout_s",
    }.items()
}
_IMAGE_BODY = {
    MULTIPART: {
        "schema": {
            "type": "object",
            "properties": {IMAGE_FIELD: {"type": "string", "format": "binary"}},
            "required": [IMAGE_FIELD],
        }
    }
}
_SEARCH_BODY = {
    **_IMAGE_BODY,
    "application/json": {
        "schema": {
            "type": "object",
            "properties": {
                "text": {"type": "string", "description": "words to search for"},
                "case": {"type": "string", "description": "an indexed image_id: its neighbours"},
                "k": {"type": "integer"},
                "mode": {"type": "string", "enum": ["captions", "images"]},
                "where": {"type": "object", "description": 'filters: {"modality": ["CT"]}'},
                "text_weight": {"type": "number", "description": "steering text's share"},
                "more_like": {"type": "array", "items": {"type": "string"}},
                "less_like": {"type": "array", "items": {"type": "string"}},
            },
        }
    },
}
_REFINE_PARAMS = [
    {"name": "roi", "in": "query", "schema": {"type": "string"},
     "description": "search a region of the uploaded image: x,y,w,h pixels"},
    {"name": "roi_weight", "in": "query", "schema": {"type": "number"},
     "description": "the region's share when mixed with the whole image (1: region alone)"},
    {"name": "text", "in": "query", "schema": {"type": "string"},
     "description": "with an uploaded image: words that steer it"},
    {"name": "text_weight", "in": "query", "schema": {"type": "number"},
     "description": "the steering text's share"},
    {"name": "more_like", "in": "query", "schema": {"type": "array", "items": {"type": "string"}},
     "description": "image_ids marked relevant (repeat the parameter)"},
    {"name": "less_like", "in": "query", "schema": {"type": "array", "items": {"type": "string"}},
     "description": "image_ids marked not relevant (repeat the parameter)"},
]  # fmt: skip
_SEARCH_PARAMS = [
    {"name": "k", "in": "query", "schema": {"type": "integer"}, "description": "hits (default 5)"},
    {
        "name": "mode",
        "in": "query",
        "schema": {"type": "string", "enum": ["captions", "images"]},
        "description": "match the indexed captions or images (default: captions for an "
        "image, images for a text or case)",
    },
    {
        "name": "where",
        "in": "query",
        "schema": {"type": "string"},
        "description": "JSON object of filters; or give any column as a parameter, e.g. "
        "modality=CT (repeat it for several values)",
    },
]


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


@router.get("/healthz", tags=["probes"])
async def healthz() -> dict[str, str]:
    """The process is up (answers at once, also while the index loads)."""
    return {"status": "ok"}


@router.get("/readyz", tags=["probes"], responses={503: _ERRORS[503]})
async def readyz(request: Request) -> JSONResponse:
    """The index and encoder are loaded (503 while loading or after a failed load)."""
    service = _service(request)
    if service.status == "ready":
        return JSONResponse({"status": "ready"})
    answer: dict[str, str] = {"status": service.status}
    if service.status == "failed":
        # readyz is open without the token: the reason (paths) only goes to token holders
        answer["error"] = (
            "the index could not be loaded; the server log says why"
            if service.options.token is not None
            else f"the index could not be loaded: {service.problem}"
        )
    return JSONResponse(answer, status_code=503)


@router.get("/metrics", tags=["probes"])
async def metrics(request: Request) -> Response:
    """Prometheus text format: requests by endpoint and status, latencies, batch sizes."""
    return Response(_service(request).metrics.render(), media_type=CONTENT_TYPE)


@router.post(
    "/v1/search",
    tags=["v1"],
    responses={200: {"model": answers.SearchAnswer}, **_ERRORS},
    openapi_extra={
        "requestBody": {"content": _SEARCH_BODY},
        "parameters": _SEARCH_PARAMS + _REFINE_PARAMS,
    },
)
async def search(request: Request) -> JSONResponse:
    """Nearest cases to an image (multipart `image`), a text (`{"text": ...}`) or an
    indexed case (`{"case": image_id}`, itself excluded); k, mode and filters as query
    parameters or JSON fields."""
    start = time.perf_counter()
    service = _service(request)
    engine = service.engine
    kind = body_kind(request)
    body = await read_json(request) if kind != MULTIPART else None
    parsed = parse_search(
        {name: request.query_params.getlist(name) for name in request.query_params},
        body,
        columns=engine.columns,
        cfg=service.options.cfg,
        retrieval=service.options.retrieval,
    )
    params, refine = parsed.params, parsed.refine
    if body is None:
        image = await read_image(request)
        hits = await (
            service.search_image(image, params)
            if refine is None
            else service.search_refined(params, refine, image=image)
        )
        query: dict[str, Any] = {"kind": "image", "width": image.width, "height": image.height}
    elif parsed.text is not None:
        hits = await (
            service.search_text(parsed.text, params)
            if refine is None
            else service.search_refined(params, refine, text=parsed.text)
        )
        query = {"kind": "text", "text": parsed.text}
    else:
        assert parsed.case is not None
        hits = await (
            service.case_neighbours(parsed.case, params)
            if refine is None
            else service.search_refined(params, refine, case=parsed.case)
        )
        query = {"kind": "case", "image_id": parsed.case}
    if refine is not None:
        query["refine"] = refine.describe(current().refine)
    return JSONResponse(
        {
            "query": query,
            "mode": params.mode,
            "hits": [answers.hit_json(h) for h in hits],
            "took_ms": _ms(start),
        }
    )


@router.post(
    "/v1/caption",
    tags=["v1"],
    responses={200: {"model": answers.CaptionAnswer}, **_ERRORS},
    openapi_extra={
        "requestBody": {"content": _IMAGE_BODY, "required": True},
        "parameters": [
            {
                "name": "k",
                "in": "query",
                "schema": {"type": "integer"},
                "description": "neighbours in the prompt (default generation.k)",
            },
        ],
    },
)
async def caption(request: Request) -> JSONResponse:
    """Caption an image (multipart `image`) from its nearest neighbours' captions, with the
    backend the server was started with; the answer keeps the neighbours and prompt."""
    start = time.perf_counter()
    service = _service(request)
    engine = service.engine  # 503 before reading the upload when not ready
    if body_kind(request) != MULTIPART:
        raise InputError(f"send the image to caption as multipart field {IMAGE_FIELD!r}")
    unknown = sorted(set(request.query_params) - {"k"})
    if unknown:
        raise InputError(f"unknown parameter {unknown[0]!r} for /v1/caption; it takes k")
    k = engine.generation.k  # as resolved with the adapter's own settings
    if "k" in request.query_params:
        k = parse_k(one_value("k", request.query_params.getlist("k")), service.options.cfg.max_k)
    image = await read_image(request)
    result = await service.caption(image, k)
    return JSONResponse(answers.caption_json(result, _ms(start)))


@router.get(
    "/v1/cases/{image_id}",
    tags=["v1"],
    responses={200: {"model": answers.CaseModel}, **_ERRORS},
)
async def case(request: Request, image_id: str) -> JSONResponse:
    """One indexed case: caption, concepts, split, metadata (quote `/` in ids as %2F)."""
    return JSONResponse(answers.case_json(_service(request).engine.case(unquote(image_id))))


@router.get(
    "/v1/cases/{image_id}/thumbnail",
    tags=["v1"],
    responses={200: {"content": {"image/jpeg": {}}}, **_ERRORS},
    response_class=Response,
)
async def thumbnail(request: Request, image_id: str) -> Response:
    """A small JPEG of the case (the index's stored thumbnail)."""
    engine = _service(request).engine
    data = await run_in_threadpool(engine.thumbnail, unquote(image_id))
    return Response(data, media_type="image/jpeg", headers={"cache-control": "max-age=3600"})


@router.get("/v1/index", tags=["v1"], responses=_ERRORS)
async def index(request: Request) -> JSONResponse:
    """The index in short: case count, encoder, index type, created at, filterable columns."""
    return JSONResponse(_service(request).engine.summary)
