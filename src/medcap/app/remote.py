"""The browser on a running `medcap serve` (`medcap app --api URL`): no model in this process.

`RemoteIndex` stands in for `AppIndex` on the search and case pages: searches, a case's
neighbours, case details and thumbnails all come from the service through `medcap.Client`,
so several people can browse one warm index. `RemoteCases` answers the part of
`CaseTable` those pages use; what the service does not offer (browsing cases by row
order, the dataset summary, choosing a caption backend) is left out of this mode.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medcap.app.cards import CaseCard, cards_from_hits
from medcap.app.cases import CaseInfo, load_image_bytes, pick_card_fields
from medcap.app.session import AppIndex, AppLoadError
from medcap.client import Client
from medcap.errors import InputError, ServiceError
from medcap.types import Hit

if TYPE_CHECKING:
    from PIL import Image

    from medcap.config import SearchMode
    from medcap.retrieval import Refinement

_CACHED = 2048  # case details and thumbnails kept per server process


def _display(value: Any) -> str:
    """A metadata value as the case table shows it (numbers with `g`, lists joined)."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ", ".join(_display(v) for v in value)
    return "" if value is None else str(value)


class _Cache(OrderedDict[Any, Any]):
    """A small thread-safe LRU (sessions of one server share it)."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def put(self, key: Any, value: Any) -> None:
        with self.lock:
            self[key] = value
            self.move_to_end(key)
            while len(self) > _CACHED:
                self.popitem(last=False)

    def find(self, key: Any) -> Any:
        with self.lock:
            return self.get(key)


class RemoteCases:
    """The indexed cases as a `medcap serve` service describes them."""

    def __init__(self, client: Client, summary: Mapping[str, Any]) -> None:
        self.client = client
        self.count = int(summary["count"])
        columns: Mapping[str, Mapping[str, Any]] = summary.get("columns", {})
        self.column_kinds = {n: c["kind"] for n, c in columns.items() if n != "split"}
        self._values = {n: list(c["values"] or []) for n, c in columns.items()}
        self._infos = _Cache()
        self._thumbs = _Cache()

    def __len__(self) -> int:
        return self.count

    def __contains__(self, image_id: object) -> bool:
        if not isinstance(image_id, str):
            return False
        try:
            self.info(image_id)
        except InputError:
            return False
        return True

    def remember(self, hits: Sequence[Hit]) -> None:
        """Keep the details of cases that came back from a search (no request per card)."""
        for hit in hits:
            self._infos.put(hit.image_id, _info(hit))

    def info(self, image_id: str) -> CaseInfo:
        """A case's caption, concepts, split and metadata (asked once, then cached)."""
        found = self._infos.find(image_id)
        if found is None:
            try:
                found = _info(self.client.case(image_id))
            except ServiceError as exc:
                if exc.status == 404:
                    raise InputError(f"no case {image_id!r} in the served index") from None
                raise
            self._infos.put(image_id, found)
        return found  # type: ignore[no-any-return]

    def card_metadata(self, image_id: str, fields: Sequence[str] = ()) -> dict[str, str]:
        """The few metadata values a result card shows (as CaseTable.card_metadata)."""
        return pick_card_fields(self.info(image_id).metadata, self.column_kinds, fields)

    def filter_values(self, max_values: int) -> dict[str, list[str]]:
        """Filterable columns (split, text and flag metadata with 2..max_values values)."""
        return {
            name: values
            for name, values in self._values.items()
            if self.column_kinds.get(name, "text") != "number" and 2 <= len(values) <= max_values
        }

    def first_id(self) -> str | None:
        """The service lists no cases: a case page starts from a search or a typed id."""
        return None

    def adjacent(self, image_id: str) -> tuple[str | None, str | None]:
        """No row order over the API: no previous or next case."""
        return None, None

    def has_original(self, image_id: str) -> bool:
        """Only the service's thumbnail is reachable from here."""
        return False

    def image(self, image_id: str) -> Image.Image:
        """The case's thumbnail from the service."""
        found = self._thumbs.find(image_id)
        if found is None:
            found = load_image_bytes(self.client.thumbnail(image_id), image_id)
            self._thumbs.put(image_id, found)
        return found  # type: ignore[no-any-return]

    def thumbnail(self, image_id: str, max_px: int) -> Image.Image:
        """The case's thumbnail scaled to at most `max_px` per side."""
        image = self.image(image_id).copy()
        image.thumbnail((max_px, max_px))
        return image


def _info(hit: Hit) -> CaseInfo:
    metadata = {k: _display(v) for k, v in hit.metadata.items() if _display(v)}
    return CaseInfo(hit.image_id, hit.caption, hit.cuis, hit.split, metadata)


@dataclass(frozen=True)
class RemoteIndex:
    """A `medcap serve` service in place of an opened index."""

    url: str
    client: Client
    cases: RemoteCases
    encoder_spec: str

    @property
    def label(self) -> str:
        """How the sidebar names it."""
        return self.url

    def search_cards(
        self,
        *,
        image: Image.Image | None,
        text: str | None,
        k: int,
        mode: SearchMode,
        filters: Mapping[str, Sequence[str]] | None,
        thumbnail_px: int | None,
        case: str | None = None,
        refine: Refinement | None = None,
    ) -> list[CaseCard]:
        """Top-`k` cards for an image, a text or an indexed case's neighbours; `refine`
        is sent along (the service refines the query)."""
        where = {name: list(values) for name, values in (filters or {}).items() if values}
        extra: dict[str, Any] = {}
        if refine is not None and not refine.empty:
            extra = {
                "roi": refine.roi, "roi_weight": refine.roi_weight,
                "text_weight": refine.text_weight,
                "more_like": refine.more_like, "less_like": refine.less_like,
            }  # fmt: skip
            if refine.text is not None:
                text = refine.text  # with an image: steers it
        hits = self.client.search(image, text=text, case=case, k=k, mode=mode, where=where, **extra)
        self.cases.remember(hits)
        return cards_from_hits(self.cases, hits, thumbnail_px=thumbnail_px)


AnyIndex = AppIndex | RemoteIndex


def open_remote_index(url: str, token: str | None = None) -> RemoteIndex:
    """Connect to the service at `url`, or raise AppLoadError saying why not."""
    client = Client(url, token)
    try:
        summary = client.index()
    except ServiceError as exc:
        raise AppLoadError("service", str(exc)) from None
    spec = str(summary.get("encoder", {}).get("spec", ""))
    return RemoteIndex(client.url, client, RemoteCases(client, summary), spec)
