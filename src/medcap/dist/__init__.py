"""Index builds and batch captioning on a Ray cluster (`--engine ray`; medcap[dist]).

A program package, like `runs`: it joins the library's steps to Ray. Index builds keep
`medcap.index`'s chunking, resume checks, shard writer and finalise sequence and only
embed elsewhere (`RayIndexEngine`, a `ShardEngine`); caption runs keep
`medcap.runs.caption`'s CSV, resume and run identity and only caption elsewhere
(`RayCaptionEngine`). Nothing in the library imports this package.
"""

from __future__ import annotations

from medcap.errors import MissingExtraError

try:
    import ray  # noqa: F401
except ImportError:
    raise MissingExtraError("ray", "dist") from None

from medcap.dist.caption_engine import RayCaptionEngine
from medcap.dist.cluster import RaySession, pool_shape, ray_session
from medcap.dist.index_engine import RayIndexEngine

__all__ = ["RayCaptionEngine", "RayIndexEngine", "RaySession", "pool_shape", "ray_session"]
