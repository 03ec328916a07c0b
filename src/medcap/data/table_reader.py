"""Layout (c): a folder of images plus a CSV, TSV or JSONL table naming them.

Column names come from options (falling back to `DataConfig` defaults and a few common
alternatives such as `file_name`, used by Hugging Face image folders). Image paths are
relative to the table's folder and must stay inside it (see medcap.data.paths). Rows whose
image file is missing or outside are skipped and listed.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from medcap.config import DEFAULTS, DataConfig
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
from medcap.errors import InputError
from medcap.types import ImageRef

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json")
BAD_ROW = "__medcap_bad_row__"  # key marking a JSONL line that could not be parsed
_FALLBACKS = {
    "image": ("file_name", "image_path", "path", "filename", "file", "Image"),
    "caption": ("text", "Caption", "report"),
    "id": ("ID", "id", "Id"),
    "CUI": ("cuis", "CUIs", "concepts"),
    "split": ("Split",),
}


def iter_table(path: Path, encoding: str = DEFAULTS.data.encoding) -> Iterator[dict[str, Any]]:
    """Rows of a CSV/TSV (header row) or JSONL/JSON (objects) file, as dicts.

    Text that is not valid `encoding` raises InputError naming the file and the encoding.
    """
    with _decoding(path, encoding):
        yield from _iter_table(path, _codec(encoding))


def _iter_table(path: Path, codec: str) -> Iterator[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        with open(path, encoding=codec) as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield _json_object(line, path, number)
        return
    if suffix == ".json":
        data = json.loads(path.read_text(encoding=codec))
        if not isinstance(data, list):
            raise InputError(
                f"{path}: expected a JSON list of objects; use JSONL (one object per line)"
            )
        yield from (row for row in data if isinstance(row, dict))
        return
    with open(path, encoding=codec, newline="") as handle:
        yield from csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ",")


def table_columns(path: Path, encoding: str = DEFAULTS.data.encoding) -> list[str]:
    """Column names: the CSV header, or the keys of the first JSON object."""
    if path.suffix.lower() in (".csv", ".tsv"):
        with _decoding(path, encoding), open(path, encoding=_codec(encoding), newline="") as f:
            header = next(
                csv.reader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ","), []
            )
        return [h for h in header]
    for row in iter_table(path, encoding):
        if BAD_ROW not in row:
            return list(row)
    return []


def read_cui_mapping(path: Path, encoding: str = DEFAULTS.data.encoding) -> dict[str, str]:
    """`cui_mapping.csv` (`CUI,Canonical name`) -> {CUI: name}."""
    mapping: dict[str, str] = {}
    with _decoding(path, encoding), open(path, encoding=_codec(encoding), newline="") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        for row in reader:
            if len(row) >= 2 and row[0].strip():
                mapping[row[0].strip()] = row[1].strip()
    return mapping


def _codec(encoding: str) -> str:
    """The codec to read with: utf-8 also skips a byte-order mark (Excel writes one)."""
    return "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding


@contextlib.contextmanager
def _decoding(path: Path, encoding: str) -> Iterator[None]:
    """Turn a decoding failure inside the block into one line naming the file and encoding."""
    try:
        yield
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start]
        raise InputError(
            f"{path}: not valid {encoding} text (cannot decode byte 0x{byte:02x}); "
            "pass its encoding with --encoding, e.g. --encoding latin-1 or cp1252"
        ) from None


def pick_column(
    columns: Sequence[str],
    given: str | None,
    default: str,
    what: str,
    source: Path,
    *,
    required: bool,
) -> str | None:
    """The column to use: `given` (must exist), else `default`, else a common alternative."""
    if given is not None:
        if given not in columns:
            raise missing_column(source, given, what, columns)
        return given
    for candidate in (default, *_FALLBACKS.get(what, ())):
        if candidate in columns:
            return candidate
    if required:
        raise missing_column(source, default, what, columns)
    return None


def missing_column(source: Path, column: str, what: str, columns: Sequence[str]) -> InputError:
    """The one-line error for a missing column: file, column, columns present, the fix."""
    present = ", ".join(c if c.isprintable() else repr(c) for c in columns) or "none"
    flag = {"CUI": "cui", "id": "id"}.get(what, what)
    return InputError(
        f"{source}: missing {what} column '{column}'; columns present: {present}; "
        f"pass --{flag}-column NAME"
    )


def file_digest(path: Path, digest: Any | None = None) -> Any:
    """Feed a file's bytes into a hashlib digest (new sha256 when none) and return it."""
    digest = digest or hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest


class TableDataset(Dataset):
    """A CSV/TSV/JSONL table of image paths and captions (layout c)."""

    def __init__(
        self,
        table: str | Path,
        *,
        name: str | None = None,
        columns: Columns = DEFAULT_COLUMNS,
        cfg: DataConfig | None = None,
    ) -> None:
        self.table = Path(table)
        super().__init__(name or str(table), cfg)
        cfg = self.config
        self._paths = ImagePaths(self.table.parent, allow_outside=cfg.allow_outside_paths)
        names = table_columns(self.table, cfg.encoding)
        self._image_col = pick_column(
            names, columns.image, cfg.image_column, "image", self.table, required=True
        )
        self._caption_col = pick_column(
            names, columns.caption, cfg.caption_column, "caption", self.table, required=True
        )
        self._id_col = pick_column(
            names, columns.id, cfg.id_column, "id", self.table, required=False
        )
        self._cui_col = pick_column(
            names, columns.cui, cfg.cui_column, "CUI", self.table, required=False
        )
        self._split_col = pick_column(
            names, columns.split, cfg.split_column, "split", self.table, required=False
        )
        self._splits: list[str] | None = None

    def splits(self) -> list[str]:
        if self._splits is None:
            if self._split_col is None:
                self._splits = ["train"]
            else:
                found = {
                    normalise_split(str(r.get(self._split_col) or "train"))
                    for r in iter_table(self.table, self.config.encoding)
                }
                self._splits = order_splits(found)
        return self._splits

    def fingerprint(self) -> str:
        return str(file_digest(self.table, hashlib.sha256(b"table-v1\n")).hexdigest())

    def _rows(self, split: str, *, with_images: bool = True) -> Iterator[RawRow]:
        source = self.table.name
        core = {self._image_col, self._caption_col, self._id_col, self._cui_col, self._split_col}
        for row_number, row in enumerate(iter_table(self.table, self.config.encoding)):
            if (
                self._split_col is not None
                and normalise_split(str(row.get(self._split_col) or "train")) != split
            ):
                continue
            stored = row.get(self._image_col or "")
            problem = row.get(BAD_ROW)
            image = None
            if problem is not None:
                pass
            elif stored is None or not str(stored).strip():
                problem = f"missing value in image column '{self._image_col}'"
            else:
                path, problem = self._paths.resolve(str(stored))
                if path is not None:
                    if not path.is_file():
                        problem = f"image file not found: {path}"
                    image = ImageRef(path=str(path))
            image_id = row.get(self._id_col) if self._id_col else None
            if (image_id is None or str(image_id).strip() == "") and stored:
                image_id = Path(str(stored)).stem
            yield RawRow(
                source=source,
                row=row_number,
                image_id=None if image_id is None else str(image_id),
                caption=None
                if row.get(self._caption_col or "") is None
                else str(row[self._caption_col or ""]),
                cuis=parse_cuis(row.get(self._cui_col)) if self._cui_col else (),
                image=image,
                extra={
                    k: v for k, v in row.items() if k not in core and k is not None and k != BAD_ROW
                },
                problem=problem,
            )


def _json_object(line: str, path: Path, number: int) -> dict[str, Any]:
    """One JSONL line; a bad line becomes a row marked bad (skipped later, never a crash)."""
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        return {BAD_ROW: f"line {number} is not valid JSON ({exc.msg})"}
    if not isinstance(value, dict):
        return {BAD_ROW: f"line {number} is not a JSON object"}
    return value
