"""Layout (b): the official ROCOv2 release and its Kaggle copy.

Official: `{train,valid,test}/ROCOv2_2023_{split}_NNNNNN.jpg`, `{split}_captions.csv`
(`ID,Caption`), `{split}_concepts.csv` / `{split}_concepts_manual.csv` (`ID,CUIs`, CUIs
joined with `;`), `cui_mapping.csv`. Kaggle nests images as `{split}_images/{split}/`.
Caption rows whose image file is missing are skipped and listed (IDs have gaps).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
from medcap.data.images import IMAGE_SUFFIXES
from medcap.data.paths import ImagePaths
from medcap.data.table_reader import (
    file_digest,
    iter_table,
    missing_column,
    read_cui_mapping,
    table_columns,
)
from medcap.errors import InputError
from medcap.types import ImageRef

CAPTIONS_SUFFIX = "_captions.csv"


def is_release_dir(root: Path) -> bool:
    """True when `root` holds `{split}_captions.csv` files."""
    return root.is_dir() and any(root.glob(f"*{CAPTIONS_SUFFIX}"))


def _image_dir_candidates(root: Path, raw: str) -> list[Path]:
    return [root / raw, root / f"{raw}_images" / raw, root / f"{raw}_images", root / "images" / raw]


class ReleaseDataset(Dataset):
    """Captions CSV files plus per-split image folders (official release or Kaggle)."""

    def __init__(
        self,
        root: str | Path,
        *,
        name: str | None = None,
        columns: Columns = DEFAULT_COLUMNS,
        cfg: DataConfig | None = None,
    ) -> None:
        self.root = Path(root)
        super().__init__(name or str(root), cfg)
        encoding = self.config.encoding
        self._paths = ImagePaths(self.root, allow_outside=self.config.allow_outside_paths)
        self._splits: dict[str, _SplitFiles] = {}
        for captions in sorted(self.root.glob(f"*{CAPTIONS_SUFFIX}")):
            raw = captions.name[: -len(CAPTIONS_SUFFIX)]
            image_dir = next((d for d in _image_dir_candidates(self.root, raw) if d.is_dir()), None)
            if image_dir is None:
                looked = ", ".join(
                    f"{d.relative_to(self.root)}/" for d in _image_dir_candidates(self.root, raw)
                )
                raise InputError(
                    f"{self.root}: no image folder for split '{raw}' (looked for {looked}); "
                    "put the images there or pass a folder with a CSV/JSONL table instead"
                )
            names = table_columns(captions, encoding)
            id_col = _column(names, columns.id, "ID", "id", captions)
            caption_col = _column(names, columns.caption, "Caption", "caption", captions)
            concepts = self._concepts_file(raw)
            cui_cols: tuple[str, str] | None = None
            if concepts is not None:
                concept_columns = table_columns(concepts, encoding)
                cui_cols = (
                    _column(concept_columns, columns.id, "ID", "id", concepts),
                    _column(concept_columns, columns.cui, "CUIs", "CUI", concepts),
                )
            self._splits[normalise_split(raw)] = _SplitFiles(
                captions, image_dir, id_col, caption_col, concepts, cui_cols
            )

    def splits(self) -> list[str]:
        return order_splits(self._splits)

    def fingerprint(self) -> str:
        digest = hashlib.sha256(b"release-v1\n")
        for split in self.splits():
            files = self._splits[split]
            for table in (files.captions, files.concepts):
                if table is not None:
                    digest.update(f"{table.name}\n".encode())
                    file_digest(table, digest)
            names = sorted(entry.name for entry in os.scandir(files.image_dir) if entry.is_file())
            digest.update(("\n".join(names) + "\n").encode())
        return digest.hexdigest()

    def cui_names(self) -> dict[str, str]:
        mapping = self.root / "cui_mapping.csv"
        return read_cui_mapping(mapping, self.config.encoding) if mapping.is_file() else {}

    def _concepts_file(self, raw: str) -> Path | None:
        for name in (f"{raw}_concepts.csv", f"{raw}_concepts_manual.csv"):
            if (self.root / name).is_file():
                return self.root / name
        return None

    def _rows(self, split: str, *, with_images: bool = True) -> Iterator[RawRow]:
        files = self._splits[split]
        cuis: dict[str, tuple[str, ...]] = {}
        if files.concepts is not None and files.cui_cols is not None:
            id_col, cui_col = files.cui_cols
            for row in iter_table(files.concepts, self.config.encoding):
                cuis[str(row.get(id_col) or "").strip()] = parse_cuis(row.get(cui_col))
        images = _index_images(files.image_dir)
        source = files.captions.name
        for number, row in enumerate(iter_table(files.captions, self.config.encoding)):
            image_id = str(row.get(files.id_col) or "").strip()
            stem = (
                Path(image_id).stem if Path(image_id).suffix.lower() in IMAGE_SUFFIXES else image_id
            )
            found = images.get(stem)
            path = files.image_dir / found if found else None
            problem = None if found or not stem else f"image file not found in {files.image_dir}"
            if path is not None:  # the image folder, or the file, may be a symlink
                problem = self._paths.check(path)
                path = None if problem else path
            yield RawRow(
                source=source,
                row=number,
                image_id=stem,
                caption=row.get(files.caption_col),
                cuis=cuis.get(image_id, cuis.get(stem, ())),
                image=ImageRef(path=str(path)) if path is not None else None,
                extra={},
                problem=problem,
            )


@dataclass(frozen=True)
class _SplitFiles:
    captions: Path
    image_dir: Path
    id_col: str
    caption_col: str
    concepts: Path | None
    cui_cols: tuple[str, str] | None  # (id column, CUIs column) of the concepts file


def _column(columns: list[str], given: str | None, default: str, what: str, source: Path) -> str:
    """`given` or `default`, matched case-insensitively (`ID`, `Caption`, `CUIs`)."""
    wanted = given or default
    by_lower = {c.strip().lower(): c for c in columns}
    if wanted.lower() in by_lower:
        return by_lower[wanted.lower()]
    raise missing_column(source, wanted, what, columns)


def _index_images(image_dir: Path) -> dict[str, str]:
    """Image file stem -> file name, listing the folder once."""
    index: dict[str, str] = {}
    with os.scandir(image_dir) as entries:
        for entry in entries:
            suffix = os.path.splitext(entry.name)[1].lower()
            if suffix in IMAGE_SUFFIXES and entry.is_file():
                index.setdefault(os.path.splitext(entry.name)[0], entry.name)
    return index
