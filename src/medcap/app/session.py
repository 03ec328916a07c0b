"""Open what one browser server needs (retriever and case table) with user-facing messages.

Plain code, no Streamlit: `resources.py` caches `open_app_index` once per index path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from medcap.app.launch import check_index_dir
from medcap.config import current
from medcap.errors import MedcapError

if TYPE_CHECKING:
    from medcap.app.cases import CaseTable
    from medcap.retrieval import Retriever

log = logging.getLogger(__name__)

ProblemKind = Literal["missing", "invalid", "encoder", "service"]


class AppLoadError(MedcapError):
    """The browser cannot open its index; `kind` says which step failed."""

    def __init__(self, kind: ProblemKind, message: str) -> None:
        super().__init__(message)
        self.kind: ProblemKind = kind


@dataclass(frozen=True)
class AppIndex:
    """One opened index: its retriever (encoder + vectors) and its case table."""

    path: Path
    retriever: Retriever
    cases: CaseTable

    @property
    def encoder_spec(self) -> str:
        """The encoder spec recorded in the manifest."""
        return str(self.retriever.index.manifest.spec)


def open_app_index(
    index_dir: str | Path, *, device: str = "auto", verify: bool | None = None
) -> AppIndex:
    """Open the index, its encoder and its case table, or raise AppLoadError saying why.

    `verify` checks the index files' checksums (default: the active config's index.verify,
    which `medcap app --no-verify` sets). The encoder must be the one that built the index.
    """
    from medcap.app.cases import CaseTable
    from medcap.index import open_index
    from medcap.retrieval import Retriever, load_index_encoder

    try:
        path = check_index_dir(index_dir)
    except MedcapError as exc:
        raise AppLoadError("missing", str(exc)) from None
    try:
        # damage shows now, not at the first search
        verify = current().index.verify if verify is None else verify
        index = open_index(path, device=current().index.search_device, preload=True, verify=verify)
    except MedcapError as exc:
        raise AppLoadError("invalid", str(exc)) from None
    spec = str(index.manifest.spec)
    try:
        encoder = load_index_encoder(index, device=device, cfg=current().encoder)
        retriever = Retriever(encoder, index)
    except Exception as exc:  # noqa: BLE001 - any failure here is "the encoder would not load"
        reason = str(exc) if isinstance(exc, MedcapError) else f"{type(exc).__name__}: {exc}"
        raise AppLoadError(
            "encoder", f"index {path}: its encoder {spec!r} could not be loaded: {reason}"
        ) from None
    log.info("opened index %s (%d cases, encoder %s)", path, len(index), spec)
    return AppIndex(path=path, retriever=retriever, cases=CaseTable.from_index(index))
