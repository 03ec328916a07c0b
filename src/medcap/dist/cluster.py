"""Joining a Ray cluster, or starting a local Ray for one command, and sizing actor pools.

`ray_session(cfg)` connects to `DistConfig.address` (a cluster started with `ray start`),
or starts a Ray on this machine in its own session folder and stops it on exit, whatever
happens. On a loopback cluster (nodes started with `--node-ip-address=127.0.0.x`) the
driver joins as the node whose address it dialled, so every address Ray exchanges stays on
loopback. (Ray turns 127.0.0.1 itself into the machine's outward address, so loopback
clusters use other 127.0.0.0/8 addresses; Ray 2.60's gcs_server, raylet and worker gRPC
servers still listen on all interfaces whatever the node address.)

A local Ray gets a token of its own (RAY_AUTH_MODE=token, RAY_AUTH_TOKEN for this process
and the Ray processes it starts): since its servers listen on every interface, nobody else
may submit work to it, and Ray does not write ~/.ray/auth_token, which would switch every
later `ray start` of the user's to token authentication.
"""

from __future__ import annotations

import contextlib
import importlib
import ipaddress
import logging
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import ray

from medcap.config import DistConfig
from medcap.errors import InputError, first_line

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class RaySession:
    """A connected driver: what the cluster holds, and whether this process started it."""

    address: str  # "local" when this process started the Ray
    nodes: int
    cpus: float
    gpus: float
    started_s: float  # seconds ray.init took


@dataclass(frozen=True)
class PoolShape:
    """How many actors, the resources each asks for, and how many tasks stay in flight."""

    actors: int
    cpus: float
    gpus: float
    window: int  # decode tasks + actor calls queued at once

    @property
    def device(self) -> str:
        """The torch device of each actor (Ray sets CUDA_VISIBLE_DEVICES for GPU actors)."""
        return "cuda" if self.gpus > 0 else "cpu"

    @property
    def threads(self) -> int:
        """torch threads of a CPU actor: its CPU share, at least one."""
        return max(1, int(self.cpus))


def _driver_ip(cfg: DistConfig) -> str | None:
    """The node IP the driver joins as: the setting, else a loopback host of the address."""
    if cfg.node_ip_address or not cfg.address:
        return cfg.node_ip_address
    host = cfg.address.rsplit(":", 1)[0].removeprefix("ray://").strip("[]")
    try:
        return host if ipaddress.ip_address(host).is_loopback else None
    except ValueError:
        return None  # a host name: Ray resolves it


def _init_kwargs(cfg: DistConfig) -> dict[str, Any]:
    common: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": cfg.log_to_driver}
    ip = _driver_ip(cfg)
    if ip:
        common["_node_ip_address"] = ip
    if cfg.address:
        return {"address": cfg.address, **common}
    store = cfg.local_object_store_mb * 1024 * 1024 if cfg.local_object_store_mb else None
    return {
        "address": "local",
        "num_cpus": cfg.local_num_cpus,
        "object_store_memory": store,
        "include_dashboard": False,
        **common,
    }


def _auth_reloader() -> Callable[[], None] | None:
    """A function that makes this process's Ray read RAY_AUTH_* again (it reads them once,
    at import; Ray's own `ray.init()` reloads them this way when it turns token
    authentication on), or None when this Ray version has no such hooks."""
    raylet = importlib.import_module("ray._raylet")
    config = getattr(raylet, "Config", None)
    loader = getattr(raylet, "AuthenticationTokenLoader", None)
    if config is None or loader is None:
        return None

    def reload() -> None:
        config.initialize("")
        loader.instance().reset_cache()

    return reload


@contextlib.contextmanager
def _local_ray_env() -> Iterator[None]:
    """For a local Ray: token authentication with a fresh token (unless the user chose an
    authentication mode) and no usage statistics; the environment is restored on exit."""
    added = {"RAY_USAGE_STATS_ENABLED": "0"}  # nothing leaves the machine
    reload = None
    if "RAY_AUTH_MODE" not in os.environ and "RAY_AUTH_TOKEN" not in os.environ:
        reload = _auth_reloader()
        if reload is not None:
            added.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    added = {k: v for k, v in added.items() if k not in os.environ}
    os.environ.update(added)
    if reload is not None:
        reload()
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)
        if reload is not None:
            reload()


@contextlib.contextmanager
def ray_session(cfg: DistConfig) -> Iterator[RaySession]:
    """Connect to `cfg.address` or start a local Ray; disconnect (and stop what was started)
    on exit. An already connected driver (a notebook's `ray.init()`) is used and kept."""
    if ray.is_initialized():
        yield _describe("connected", 0.0)
        return
    with contextlib.ExitStack() as stack:
        if not cfg.address:
            stack.enter_context(_local_ray_env())
        yield stack.enter_context(_connected(cfg))


@contextlib.contextmanager
def _connected(cfg: DistConfig) -> Iterator[RaySession]:
    kwargs = _init_kwargs(cfg)
    temp_dir = None
    if not cfg.address:
        # Ray's default /tmp/ray is shared by every Ray on the machine; a folder of our own
        # keeps this session's sockets and logs apart (short: socket paths are <108 bytes).
        temp_dir = cfg.temp_dir or tempfile.mkdtemp(prefix="mcray-", dir="/tmp")
        kwargs["_temp_dir"] = temp_dir
    start = time.perf_counter()
    try:
        ray.init(**kwargs)
    except (ConnectionError, ValueError, RuntimeError, ray.exceptions.RayError) as exc:
        where = f"the Ray cluster at {cfg.address}" if cfg.address else "a local Ray"
        raise InputError(
            f"cannot start or join {where}: {first_line(exc, 200)}; check the address "
            "(`ray status` on the head node) or leave out --ray-address to run on this machine"
        ) from None
    try:
        session = _describe(cfg.address or "local", time.perf_counter() - start)
        LOG.info("ray: %s, %d node(s), %g CPUs, %g GPUs (joined in %.1f s)", session.address,
                 session.nodes, session.cpus, session.gpus, session.started_s)  # fmt: skip
        yield session
    finally:
        ray.shutdown()
        if temp_dir is not None and cfg.temp_dir is None:
            shutil.rmtree(temp_dir, ignore_errors=True)


def _describe(address: str, started_s: float) -> RaySession:
    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    alive: list[Any] = [n for n in ray.nodes() if n.get("Alive")]  # type: ignore[no-untyped-call]
    nodes = len(alive)
    return RaySession(
        address, nodes, float(resources.get("CPU", 0)), float(resources.get("GPU", 0)), started_s
    )


def pool_shape(session: RaySession, cfg: DistConfig) -> PoolShape:
    """Actors, their resources and the in-flight window for this cluster (see DistConfig).

    Refuses (one line) a pool the cluster cannot hold, which Ray would wait for forever.
    """
    gpus = cfg.gpus_per_actor if cfg.gpus_per_actor is not None else float(session.gpus >= 1)
    if cfg.actors is not None:
        actors = cfg.actors
    elif gpus > 0:
        actors = max(1, int(session.gpus // gpus))
    else:
        actors = max(1, int(session.cpus // max(2 * cfg.cpus_per_actor, 1)))
    need_cpus = actors * cfg.cpus_per_actor + cfg.decode_cpus
    if need_cpus > session.cpus or actors * gpus > session.gpus:
        raise InputError(
            f"{actors} actors of {cfg.cpus_per_actor:g} CPU and {gpus:g} GPU, plus one "
            f"{cfg.decode_cpus:g}-CPU decode task, do not fit the cluster ({session.cpus:g} CPUs, "
            f"{session.gpus:g} GPUs); pass fewer --actors or set dist.cpus_per_actor"
        )
    decode_slots = int((session.cpus - actors * cfg.cpus_per_actor) // cfg.decode_cpus)
    return PoolShape(
        actors, cfg.cpus_per_actor, gpus, actors * cfg.inflight_per_actor + decode_slots
    )
