"""Hugging Face Hub dataset names (`org/name`): the local cache first, else streaming.

Offline (`medcap.offline.is_offline`: MEDCAP_OFFLINE, HF_HUB_OFFLINE, ...) and not cached
is an `OfflineFetchError` that says what was looked for and what to pass instead. Online,
the dataset is streamed with `datasets` (`streaming=True`), images kept as undecoded bytes.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medcap.config import DataConfig
from medcap.data.dataset import (
    DEFAULT_COLUMNS,
    Columns,
    Dataset,
    RawRow,
    normalise_split,
    order_splits,
    parse_cuis,
)
from medcap.errors import OfflineFetchError, first_line
from medcap.types import ImageRef

HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def looks_like_hub_name(source: str) -> bool:
    """`org/name` with no leading `.`/`/` and no deeper path."""
    return bool(HUB_NAME.match(source))


def hub_cache_dir() -> Path:
    """The Hub cache folder: HF_HUB_CACHE, HF_HOME/hub, or ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def cached_snapshot(name: str, revision: str = "main") -> Path | None:
    """The cached snapshot folder of dataset repo `name`, if it holds parquet files."""
    repo = hub_cache_dir() / f"datasets--{name.replace('/', '--')}"
    ref = repo / "refs" / revision
    commit = ref.read_text().strip() if ref.is_file() else revision
    snapshot = repo / "snapshots" / commit
    if snapshot.is_dir() and any(snapshot.rglob("*.parquet")):
        return snapshot
    return None


def offline_error(name: str, reason: str) -> OfflineFetchError:
    """The one-line error for a hub dataset that cannot be fetched."""
    return OfflineFetchError(
        f"cannot fetch dataset {name} from the Hugging Face Hub ({reason}); pass a local directory "
        "(parquet shards, the ROCOv2 release, or images plus a CSV/JSONL file), a `medcap fetch` "
        "bundle (MEDCAP_BUNDLE), or build phantoms with `medcap data phantoms DIR`"
    )


class HubDataset(Dataset):
    """A Hub dataset streamed with `datasets`; images stay as encoded bytes."""

    def __init__(
        self,
        name: str,
        *,
        columns: Columns = DEFAULT_COLUMNS,
        cfg: DataConfig | None = None,
    ) -> None:
        super().__init__(name, cfg)
        cfg = self.config
        self._image_col = columns.image or cfg.image_column
        self._caption_col = columns.caption or cfg.caption_column
        self._id_col = columns.id or cfg.id_column
        self._cui_col = columns.cui or cfg.cui_column
        try:
            import datasets

            self._streams: Any = datasets.load_dataset(name, streaming=True)
        except Exception as exc:  # noqa: BLE001 - network, auth and missing-repo errors all end here
            raise offline_error(name, f"{type(exc).__name__}: {first_line(exc)}") from None
        self._raw = {normalise_split(k): k for k in self._streams}

    def splits(self) -> list[str]:
        return order_splits(self._raw)

    def fingerprint(self) -> str:
        info = next(iter(self._streams.values())).info
        rows = {k: getattr(v, "num_examples", None) for k, v in (info.splits or {}).items()}
        text = f"hub-v1\n{self.name}\n{info.version}\n{sorted(rows.items())}\n"
        return hashlib.sha256(text.encode()).hexdigest()

    def _rows(self, split: str, *, with_images: bool = True) -> Iterator[RawRow]:
        import datasets

        stream = self._streams[self._raw[split]]
        if self._image_col in (stream.features or {}):
            stream = stream.cast_column(self._image_col, datasets.Image(decode=False))
        if not with_images:
            stream = stream.remove_columns([self._image_col])
        core = {self._image_col, self._caption_col, self._id_col, self._cui_col}
        for number, example in enumerate(stream):
            cell = example.get(self._image_col)
            image = None
            if isinstance(cell, dict) and (cell.get("bytes") or cell.get("path")):
                image = ImageRef(path=cell.get("path"), data=cell.get("bytes"))
            yield RawRow(
                source=f"{self.name}:{self._raw[split]}",
                row=number,
                image_id=None if example.get(self._id_col) is None else str(example[self._id_col]),
                caption=example.get(self._caption_col),
                cuis=parse_cuis(example.get(self._cui_col)),
                image=image,
                extra={k: v for k, v in example.items() if k not in core},
            )
