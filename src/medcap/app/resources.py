"""Streamlit-cached resources: one index (encoder + vectors + cases) per index path per server.

Cached functions take only hashable arguments (paths, names), never read widgets, and
return shared objects that pages treat as read-only.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import TYPE_CHECKING

import streamlit as st

from medcap.app import launch
from medcap.app.remote import AnyIndex, RemoteIndex, open_remote_index
from medcap.app.report_access import ReportAccess
from medcap.app.reports import ReportView, open_report_view
from medcap.app.session import AppIndex, AppLoadError, open_app_index
from medcap.client import TOKEN_ENV
from medcap.config import current
from medcap.errors import MedcapError

if TYPE_CHECKING:
    from medcap.generation.backends.base import CaptionBackend

_BUILD_EXAMPLE = """\
# index your own dataset (folder, CSV/JSONL, ROCOv2 parquet or a hub name):
medcap index build --data path/to/dataset --out runs/my-index
medcap app --index runs/my-index

# or try it offline: synthetic phantom cases, a tiny CLIP trained on them, an index
medcap demo --out runs/demo
medcap app --index runs/demo/index"""


@st.cache_resource(show_spinner="Opening the index and loading its encoder...", max_entries=4)
def load_app_index(
    index_path: str, version: str = "", key: str | None = None, viewer_url: str | None = None
) -> AppIndex:
    """Open `index_path` once per server process and index version (`manifest_version`: a
    changed index, e.g. after `index remove`, is opened again, so withdrawn cases vanish);
    with a pseudonym `key` and a `viewer_url`, its cards link DICOM studies to the viewer."""
    from medcap.data.dicom.links import open_linker

    app = open_app_index(index_path, device=current().encoder.device)
    manifest = app.retriever.index.manifest
    app.cases.linker = open_linker(manifest, key, viewer_url, where=index_path)
    return app


def manifest_version(index_path: str) -> str:
    """Identity of the index's manifest.json (inode, mtime, size); "" when unreadable."""
    try:
        info = os.stat(os.path.join(index_path, "manifest.json"))
    except OSError:
        return ""
    return f"{info.st_ino}:{info.st_mtime_ns}:{info.st_size}"


@st.cache_resource(show_spinner="Connecting to the medcap service...", max_entries=4)
def load_remote_index(url: str, token: str | None) -> RemoteIndex:
    """The `medcap serve` service at `url`, once per server process and token."""
    return open_remote_index(url, token)


@st.cache_resource(show_spinner="Loading the caption backend...", max_entries=4)
def load_backend(
    name: str, model_id: str | None = None, adapter: str | None = None
) -> CaptionBackend:
    """Build caption backend `name` (with a model id/path and LoRA adapter) once per server."""
    from medcap.generation.captioning import build_backend

    cfg = dataclasses.replace(current().generation, backend=name)
    return build_backend(cfg, model_id=model_id or None, adapter=adapter or None)


@st.cache_resource(show_spinner="Reading the report...", max_entries=8)
def load_report_view(
    report_path: str, roots: tuple[str, ...], max_mb: float, mtime_ns: int
) -> ReportView:
    """A report's blocks, rendered once per file version (`mtime_ns` is the cache key).

    `report_path` is read only if it lies under `roots` (see report_access), checked again here.
    """
    return open_report_view(report_path, ReportAccess.of(roots, max_mb))


def report_access() -> ReportAccess:
    """The folders this server reads reports from: `--reports`, else the index directory."""
    args = launch.parse_app_args(sys.argv[1:])
    roots = args.reports or ((args.index,) if args.index is not None else ())
    return ReportAccess.of(roots, current().app.max_report_mb)


def apply_settings() -> None:
    """Make the `--set` settings the server was started with the active config."""
    from medcap.config import use_config
    from medcap.config_files import load_config

    use_config(load_config(None, launch.parse_app_args(sys.argv[1:]).settings))


def index_path_arg() -> str | None:
    """The `--index` the server was started with (resolved), or None."""
    index = launch.parse_app_args(sys.argv[1:]).index
    return str(index.expanduser().resolve()) if index is not None else None


def index_or_problem() -> tuple[AnyIndex | None, AppLoadError | None]:
    """The opened index (or the service of `--api URL`), or the reason it could not be had."""
    api = launch.parse_app_args(sys.argv[1:]).api
    path = index_path_arg()
    if api is None and path is None:
        return None, AppLoadError("missing", "the app was started without --index DIR")
    try:
        if api is not None:
            # the token comes in the environment, never in argv, where `ps` would show it
            return load_remote_index(api, os.environ.get(TOKEN_ENV)), None
        args = launch.parse_app_args(sys.argv[1:])
        version = manifest_version(str(path))
        return load_app_index(str(path), version, args.pseudonym_key, args.viewer_url), None
    except AppLoadError as exc:
        return None, exc
    except MedcapError as exc:
        return None, AppLoadError("invalid", str(exc))


def require_index() -> AnyIndex:
    """The opened index; otherwise show why on the page and stop this run."""
    loaded, problem = index_or_problem()
    if loaded is None:
        show_problem(problem)
        st.stop()
    return loaded


def show_problem(problem: AppLoadError | None) -> None:
    """An error box for a missing or unusable index, with how to build one."""
    if problem is None:
        return
    st.error(str(problem), icon=":material/error:")
    if problem.kind == "service":
        st.markdown(
            "Start the service with `medcap serve --index DIR` (the page retries on the next "
            "interaction), or check the `--api` URL and the token (`MEDCAP_TOKEN`)."
        )
        return
    if problem.kind == "encoder":
        st.markdown(
            "The index was found, but the encoder named in its `manifest.json` could not "
            "be loaded. Make the checkpoint available at that path (or in the local "
            "Hugging Face cache), or rebuild the index with an encoder you have."
        )
    st.markdown("**How to get an index**")
    st.code(_BUILD_EXAMPLE, language="bash")


def render_sidebar(loaded: AnyIndex | None, problem: AppLoadError | None) -> None:
    """A short description of the open index in the sidebar."""
    with st.sidebar:
        if loaded is None:
            st.caption("No index open.")
            return
        where = (
            f"**Service** {loaded.url}"
            if isinstance(loaded, RemoteIndex)
            else f"**Index** `{loaded.path.name}`"
        )
        st.caption(f"{where}  \n{len(loaded.cases):,} cases  \nencoder `{loaded.encoder_spec}`")


def local_index() -> AppIndex:
    """The opened local index; in `--api` mode the page says it needs one and stops."""
    loaded = require_index()
    if isinstance(loaded, RemoteIndex):
        st.info("This page needs a local index (medcap app --index DIR).")
        st.stop()
    return loaded
