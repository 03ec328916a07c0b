"""`medcap serve`: the HTTP similar-case and caption service (a program on the library).

    medcap serve --index runs/index [--port 8600] [--host 127.0.0.1] [--token TOKEN]

Endpoints (JSON, OpenAPI at /docs): `POST /v1/search` (an image as multipart field
`image`, or `{"text": ...}`; k, mode and metadata filters), `POST /v1/caption`,
`GET /v1/cases/{image_id}`, `GET /v1/cases/{image_id}/thumbnail`, `GET /v1/index`,
`GET /healthz`, `GET /readyz`, `GET /metrics` (Prometheus). Modules, one job each:

    settings     ServeOptions; where the service may listen (token rule), one worker
    auth         bearer token check; which paths stay open
    params       the search parameters, parsed in one place
    uploads      multipart images and JSON bodies
    batching     dynamic micro-batching onto the encoder's one worker thread
    engine       index + encoder + caption backend, the batched searches (no HTTP)
    service      background loading, worker threads, batchers of one process
    metrics      Prometheus counters and histograms
    middleware   token, body limit, timeout, metrics, one log line per request
    routes, answers, app, server   endpoints, JSON shapes, the FastAPI app, uvicorn

One process serves (`--workers 1`): micro-batching only groups the queries that reach one
encoder, N worker processes would each hold the index and the model, and one process
already uses every core through the encoder's and FAISS's threads. Scale out with several
services behind a load balancer. Memory is that of `medcap.open_index` plus the caption
backend's model.
"""

from __future__ import annotations
