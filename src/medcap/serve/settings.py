"""What one service process is started with, and the rule for where it may listen.

The service binds 127.0.0.1 by default. Any other address makes the index reachable from
the network, so it needs a bearer token (`--token`, or the MEDCAP_TOKEN environment
variable, which `ps` does not show) unless `--insecure` says openly that none is wanted.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from medcap.client import TOKEN_ENV
from medcap.config import DEFAULTS, EncoderConfig, GenerationConfig, RetrievalConfig, ServeConfig
from medcap.errors import InputError

_TOKEN_HINT = 'make one with: python -c "import secrets; print(secrets.token_urlsafe(32))"'


@dataclass(frozen=True)
class ServeOptions:
    """One service: the index it serves, its limits, its caption backend and its token."""

    index_dir: Path
    cfg: ServeConfig = field(default_factory=lambda: DEFAULTS.serve)
    retrieval: RetrievalConfig = field(default_factory=lambda: DEFAULTS.retrieval)  # k, modes
    generation: GenerationConfig = field(default_factory=lambda: DEFAULTS.generation)
    encoder: EncoderConfig = field(default_factory=lambda: DEFAULTS.encoder)
    generator_model: str | None = None  # the caption backend's model id or directory
    adapter: Path | None = None  # LoRA adapter of the caption backend
    encoder_model: str | None = None  # the index's encoder checkpoint, if it moved
    verify: bool | None = None  # check index checksums on open (None: index.verify)
    token: str | None = field(default=None, repr=False)
    pseudonym_key: str | None = None  # DICOM indexes: key file that links hits to studies
    viewer_url: str | None = None  # with {StudyInstanceUID}: each hit's `viewer_url`
    dicomweb_token: str | None = field(default=None, repr=False)  # to list a DICOMweb source


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_binding(host: str, token: str | None, insecure: bool, cfg: ServeConfig) -> None:
    """Refuse a non-loopback address without a token (unless `insecure`), and short tokens."""
    if token is not None and len(token) < cfg.min_token_chars:
        raise InputError(
            f"--token is {len(token)} characters; use at least {cfg.min_token_chars} "
            f"(serve.min_token_chars): {_TOKEN_HINT}"
        )
    if token is None and not insecure and not is_loopback(host):
        raise InputError(
            f"--host {host} makes the service reachable from other machines; pass --token "
            f"TOKEN (or set {TOKEN_ENV}) so clients must send 'Authorization: Bearer TOKEN' "
            f"({_TOKEN_HINT}), or --insecure to serve without one"
        )


def check_workers(workers: int) -> None:
    """One process per service: see medcap.serve for why more workers are refused."""
    if workers != 1:
        raise InputError(
            f"--workers {workers}: medcap serve runs one process, because micro-batching "
            "groups the queries that reach one encoder (N workers would split each batch N "
            "ways and hold N copies of the index and model) and that process already uses "
            "every core through the encoder's and FAISS's threads; to scale out, start "
            "several services on other ports behind a load balancer"
        )
