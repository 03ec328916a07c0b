"""Run the service with uvicorn in this process until SIGTERM or Ctrl-C.

uvicorn's graceful shutdown drains: on SIGTERM it stops accepting connections, lets the
requests in flight finish (up to `serve.graceful_shutdown_s`), runs the app's shutdown
(batchers and worker threads stop), and exits.
"""

from __future__ import annotations

import uvicorn

from medcap.serve.app import create_app
from medcap.serve.settings import ServeOptions


def run_server(options: ServeOptions, host: str, port: int) -> None:
    """Serve `options` on `host:port` (blocks until the server stops)."""
    config = uvicorn.Config(
        create_app(options),
        host=host,
        port=port,
        workers=1,
        lifespan="on",
        log_config=None,  # medcap's logging: one line per request from the middleware
        access_log=False,  # uvicorn's would print query strings, which may hold text
        server_header=False,
        timeout_graceful_shutdown=int(options.cfg.graceful_shutdown_s),
    )
    uvicorn.Server(config).run()
