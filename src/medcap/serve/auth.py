"""Bearer-token check: with a token set, every request but the probes must carry it.

`/healthz` and `/readyz` stay open so that orchestrators (Kubernetes, a load balancer)
can probe without holding the secret; they tell only whether the process is up and the
index loaded. `/metrics` needs the token (request counts, timings and the index size are
the operator's business; Prometheus scrapes with `authorization: credentials`). The API
description (`/docs`, `/openapi.json`) stays open: it holds no data.
"""

from __future__ import annotations

import hmac

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/openapi.json"})


def needs_token(path: str) -> bool:
    """Whether a request for `path` must carry the token (when one is set)."""
    return path not in OPEN_PATHS


def bearer_matches(authorization: bytes | None, token: str) -> bool:
    """Whether an `Authorization` header value is `Bearer <token>` (constant-time compare)."""
    if authorization is None:
        return False
    scheme, _, given = authorization.partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    return hmac.compare_digest(given.strip(), token.encode())
