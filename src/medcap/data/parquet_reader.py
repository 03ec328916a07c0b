"""Layout (a): Hugging Face parquet shards (`data/{split}-NNNNN-of-NNNNN.parquet`).

This is the layout of `eltorio/ROCOv2-radiology` and of medcap's phantoms. Shards are
read batch by batch (`iter_batches`), so an 18 GB split streams in constant memory;
image bytes stay in `ImageRef.data` until decoded. Columns other than the image, id,
caption, CUI and split columns are kept in `Record.extra`.

`ParquetDataset.deferred()` reads everything but the image cells: each record's image is
a `TableImageRef` (file and row), and `fetch_images` reads those cells later, row groups
at a time, wherever the images are decoded (a cluster's read tasks, medcap.dist).
"""

from __future__ import annotations

import bisect
import copy
import hashlib
import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

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
from medcap.data.paths import ImagePaths
from medcap.data.table_reader import missing_column, read_cui_mapping
from medcap.errors import CorruptArtifactError, InputError, first_line
from medcap.types import ImageRef, Record

_BATCH_ROWS = 64
_FOOTER_BYTES = 1 << 16  # the tail of a shard, where parquet keeps its metadata
_SHARD_NAME = re.compile(r"^(?P<split>[A-Za-z]+)(?:[-_.]|$)")
_MIXED = "*"  # files without a split in their name: split comes from the split column
# What pyarrow raises on a damaged file: I/O and Arrow errors, and UnicodeDecodeError (a
# ValueError) for names or string cells that are not UTF-8.
_READ_ERRORS = (OSError, pa.ArrowException, ValueError)


@dataclass(frozen=True)
class TableImageRef(ImageRef):
    """An image cell not read yet: row `row` (0-based, in the file) of `column` in the
    parquet file `table`; `base` resolves relative stored paths. See `fetch_images`."""

    table: str = ""
    row: int = 0
    column: str = ""
    base: str = ""
    root: str = ""  # the dataset folder stored paths must stay inside (medcap.data.paths)
    allow_outside: bool = False

    def describe(self) -> str:
        return f"{self.table} row {self.row}"


@dataclass(frozen=True)
class RefusedImageRef(ImageRef):
    """An image cell that names nothing readable (empty, or a path refused by
    `ImagePaths`); decoding it fails with `reason`."""

    reason: str = ""

    def describe(self) -> str:
        return self.reason


def find_parquet_files(root: Path) -> list[Path]:
    """Parquet files of a dataset directory: `data/` first, else anywhere below `root`."""
    if root.is_file():
        return [root]
    data_dir = root / "data"
    base = data_dir if data_dir.is_dir() and any(data_dir.rglob("*.parquet")) else root
    return sorted(
        p
        for p in base.rglob("*.parquet")
        if not any(part.startswith(".") for part in p.relative_to(base).parts)
    )


class ParquetDataset(Dataset):
    """Parquet shards, one split per file name (or a split column), read lazily."""

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
        files = find_parquet_files(self.root)
        if not files:
            raise InputError(
                f"no parquet files found in {self.root}; expected data/{{split}}-*.parquet"
            )
        cfg = self.config
        folder = self.root if self.root.is_dir() else self.root.parent
        self._paths = ImagePaths(folder, allow_outside=cfg.allow_outside_paths)
        self._files = files
        self._schemas = {path: _read_schema(path) for path in files}
        self._split_column = columns.split or cfg.split_column
        self._image_col = self._require(columns.image, cfg.image_column, "image")
        self._caption_col = self._require(columns.caption, cfg.caption_column, "caption")
        self._id_col = self._optional(columns.id, cfg.id_column, "id")
        self._cui_col = self._optional(columns.cui, cfg.cui_column, "CUI")
        given = columns.split is not None
        self._file_splits = {path: self._split_of(path, given) for path in files}
        self._splits: list[str] | None = None
        self._defer_images = False

    def deferred(self) -> ParquetDataset:
        """This dataset with image cells left unread (`TableImageRef`; see `fetch_images`).
        Files without an id column still read their images: the id comes from them."""
        view = copy.copy(self)  # shares .skipped and the counts with this dataset
        view._defer_images = True
        return view

    def splits(self) -> list[str]:
        if self._splits is None:
            names: set[str] = set()
            for path, split in self._file_splits.items():
                if split == _MIXED:
                    try:
                        values = pq.read_table(path, columns=[self._split_column]).column(0)
                        found = [
                            normalise_split(str(v)) for v in values.to_pylist() if v is not None
                        ]
                    except _READ_ERRORS as exc:
                        raise CorruptArtifactError(
                            f"cannot read parquet file {path}: {first_line(exc)}; "
                            "re-download or rebuild it"
                        ) from None
                    names.update(found)
                else:
                    names.add(split)
            self._splits = order_splits(names)
        return self._splits

    def fingerprint(self) -> str:
        """Names, sizes and footers (row groups, column statistics) of the shards: cheap at
        any size, yet it changes with the content."""
        digest = hashlib.sha256(b"parquet-v1\n")
        for path in self._files:
            size = path.stat().st_size
            rel = path.relative_to(self.root) if self.root.is_dir() else Path(path.name)
            digest.update(f"{rel.as_posix()}\t{size}\n".encode())
            with open(path, "rb") as handle:
                handle.seek(max(0, size - _FOOTER_BYTES))
                digest.update(handle.read())
        return digest.hexdigest()

    def cui_names(self) -> dict[str, str]:
        mapping = self.root / "cui_mapping.csv"
        return read_cui_mapping(mapping, self.config.encoding) if mapping.is_file() else {}

    # --- reading -----------------------------------------------------------------------

    def _rows(self, split: str, *, with_images: bool = True) -> Iterator[RawRow]:
        for path in self._files:
            file_split = self._file_splits[path]
            if file_split not in (split, _MIXED):
                continue
            yield from self._file_rows(
                path, split, mixed=file_split == _MIXED, with_images=with_images
            )

    def _file_rows(
        self, path: Path, split: str, *, mixed: bool, with_images: bool
    ) -> Iterator[RawRow]:
        names = self._schemas[path].names
        defer = with_images and self._defer_images and self._id_col in names
        core = {self._image_col, self._caption_col, self._id_col, self._cui_col, self._split_column}
        extra_cols = [c for c in names if c not in core]
        wanted = [
            self._caption_col,
            self._id_col,
            self._cui_col,
            self._split_column if mixed else None,
        ]
        if with_images and not defer:
            wanted.append(self._image_col)
        columns = [c for c in dict.fromkeys(wanted) if c is not None and c in names] + extra_cols
        source = self._display(path)
        row = 0
        try:
            batches = pq.ParquetFile(path).iter_batches(batch_size=_BATCH_ROWS, columns=columns)
            for batch in batches:
                data = {name: batch.column(name).to_pylist() for name in batch.schema.names}
                for i in range(batch.num_rows):
                    if mixed and normalise_split(str(data[self._split_column][i])) != split:
                        row += 1
                        continue
                    made = self._make_row(
                        path, source, row, data, i, extra_cols, with_images and not defer
                    )
                    if defer:
                        made.image = TableImageRef(
                            table=str(path),
                            row=row,
                            column=self._image_col,
                            base=str(self._base(path)),
                            root=str(self._paths.root),
                            allow_outside=self._paths.allow_outside,
                        )
                    yield made
                    row += 1
        except _READ_ERRORS as exc:
            raise CorruptArtifactError(
                f"cannot read parquet file {path} at row {row}: {first_line(exc)}; "
                "re-download or rebuild it"
            ) from None

    def _make_row(
        self,
        path: Path,
        source: str,
        row: int,
        data: dict[str, list[Any]],
        i: int,
        extra_cols: Sequence[str],
        with_images: bool,
    ) -> RawRow:
        image, problem = (
            _image_ref(data[self._image_col][i], self._base(path), self._paths)
            if with_images
            else (None, None)
        )
        image_id = data[self._id_col][i] if self._id_col in data else None
        if image_id is None:  # no id column: the stored file name, else file:row
            stored = image.path if image is not None else None
            image_id = Path(stored).stem if stored else f"{path.stem}-{row:06d}"
        cuis = parse_cuis(data[self._cui_col][i]) if self._cui_col in data else ()
        return RawRow(
            source=source,
            row=row,
            image_id=str(image_id),
            caption=data[self._caption_col][i],
            cuis=cuis,
            image=image,
            extra={name: data[name][i] for name in extra_cols},
            problem=problem,
        )

    # --- schema checks -----------------------------------------------------------------

    def _require(self, given: str | None, default: str, what: str) -> str:
        column = given or default
        for path, schema in self._schemas.items():
            if column not in schema.names:
                raise missing_column(path, column, what, schema.names)
        return column

    def _optional(self, given: str | None, default: str, what: str) -> str:
        if given is not None:
            return self._require(given, given, what)
        return default

    def _split_of(self, path: Path, split_column_given: bool) -> str:
        has_column = self._split_column in self._schemas[path].names
        if split_column_given or (has_column and not _split_from_name(path)):
            if not has_column:
                self._require(self._split_column, self._split_column, "split")
            return _MIXED
        return _split_from_name(path) or "train"

    def _base(self, path: Path) -> Path:
        """The folder that relative image paths stored in `path` resolve against."""
        return self.root if self.root.is_dir() else path.parent

    def _display(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() if self.root.is_dir() else path.name


def _split_from_name(path: Path) -> str | None:
    """`train-00000-of-00002.parquet` or `validation/0000.parquet` -> the normalised split."""
    known = ("train", "valid", "test")
    match = _SHARD_NAME.match(path.stem)
    if match and normalise_split(match.group("split")) in known:
        return normalise_split(match.group("split"))
    parent = normalise_split(path.parent.name)
    return parent if parent in known else None


def _read_schema(path: Path) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except _READ_ERRORS as exc:
        raise CorruptArtifactError(
            f"cannot read parquet file {path}: {first_line(exc)}; re-download or rebuild it"
        ) from None


def _image_ref(value: Any, base: Path, paths: ImagePaths) -> tuple[ImageRef | None, str | None]:
    """An `image` cell as {bytes, path}, raw bytes, or a path string -> (ImageRef, problem).

    A path is read only when there are no bytes, and only inside the dataset folder.
    """
    if value is None:
        return None, None
    if isinstance(value, dict):
        data, stored = value.get("bytes"), value.get("path")
        if data:
            return ImageRef(path=stored, data=data), None  # the path only names the bytes
        if not stored:
            return None, None
    elif isinstance(value, bytes | bytearray):
        return ImageRef(data=bytes(value)), None
    else:
        stored = str(value)
    path, problem = paths.resolve(str(stored), base)
    return (ImageRef(path=str(path)), None) if path is not None else (None, problem)


def _read_cells(path: Path, column: str, rows: Sequence[int]) -> list[Any]:
    """The cells of `column` at file rows `rows`, reading only the row groups holding them."""
    try:
        with pq.ParquetFile(path) as file:
            sizes = [file.metadata.row_group(g).num_rows for g in range(file.num_row_groups)]
            starts = [0]
            for size in sizes:
                starts.append(starts[-1] + size)
            groups = sorted({bisect.bisect_right(starts, r) - 1 for r in rows})
            values = file.read_row_groups(groups, columns=[column]).column(column)
    except (OSError, pa.ArrowException) as exc:
        raise CorruptArtifactError(
            f"cannot read parquet file {path}: {exc}; re-download or rebuild it"
        ) from None
    offset, at = 0, {}
    for g in groups:  # where each read group starts in `values`
        at[g] = offset
        offset += sizes[g]
    cells = []
    for r in rows:
        g = bisect.bisect_right(starts, r) - 1
        cells.append(values[at[g] + r - starts[g]].as_py())
    return cells


def fetch_images(records: Sequence[Record]) -> list[Record]:
    """`records` with every `TableImageRef` replaced by the image it names (bytes or path,
    checked like an eagerly read cell); a missing or refused cell becomes a
    `RefusedImageRef`, which fails to decode with its reason."""
    out = list(records)
    wanted: dict[tuple[str, str], list[tuple[int, TableImageRef]]] = defaultdict(list)
    for i, record in enumerate(records):
        if isinstance(record.image, TableImageRef):
            wanted[record.image.table, record.image.column].append((i, record.image))
    for (table, column), refs in wanted.items():
        cells = _read_cells(Path(table), column, [ref.row for _, ref in refs])
        for (i, ref), cell in zip(refs, cells, strict=True):
            paths = ImagePaths(Path(ref.root), allow_outside=ref.allow_outside)
            image, problem = _image_ref(cell, Path(ref.base), paths)
            if image is None:
                image = RefusedImageRef(reason=problem or f"{ref.describe()}: no image")
            out[i] = replace(records[i], image=image)
    return out
