"""`open_dataset`: one entry point for every dataset layout medcap reads.

- (a) Hugging Face parquet shards (`data/{split}-*.parquet`, ROCOv2 on the Hub, phantoms);
- (b) the official ROCOv2 release (`{split}_captions.csv` + image folders) or its Kaggle copy;
- (c) a folder of images plus a CSV/TSV/JSONL table (or the table file itself);
- (d) a folder of DICOM files (any extension), or `dicomweb:URL` (a DICOMweb server), read
  with pseudonymous ids and an allowlist of header fields (medcap.data.dicom);
- a Hub name `org/name`: the active bundle's copy (MEDCAP_BUNDLE), the local cache, else
  streamed when online.

>>> ds = open_dataset("phantoms")  # doctest: +SKIP
>>> ds.splits(), ds.count("train")  # doctest: +SKIP
(['train', 'valid', 'test'], 1600)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from medcap.config import DataConfig
from medcap.data.dataset import Columns, Dataset, normalise_split
from medcap.data.hub import HubDataset, cached_snapshot, looks_like_hub_name, offline_error
from medcap.data.parquet_reader import ParquetDataset, find_parquet_files
from medcap.data.release_reader import ReleaseDataset, is_release_dir
from medcap.data.table_reader import TABLE_SUFFIXES, TableDataset
from medcap.errors import InputError
from medcap.offline import is_offline
from medcap.snapshots.bundle import bundle_dataset_dir

if TYPE_CHECKING:
    from medcap.data.dicom import DicomOptions

__all__ = ["Dataset", "normalise_split", "open_dataset"]

_TABLE_PREFERENCE = ("metadata.jsonl", "metadata.csv", "captions.csv", "captions.jsonl")


def open_dataset(
    source: str | Path,
    *,
    id_column: str | None = None,
    caption_column: str | None = None,
    image_column: str | None = None,
    cui_column: str | None = None,
    split_column: str | None = None,
    cfg: DataConfig | None = None,
    dicom: DicomOptions | None = None,
) -> Dataset:
    """Open a dataset directory, table file or Hub name; column options override the
    column names of `cfg`.

    `cfg` (`DataConfig`; default: `DEFAULTS.data`) also sets the table encoding, whether
    image paths may leave the dataset folder, and the metadata columns kept. `dicom` (the
    pseudonym key file, a captions CSV, ...) is how a DICOM folder or `dicomweb:URL` is read.
    """
    columns = Columns(id_column, caption_column, image_column, cui_column, split_column)
    text = str(source)
    if text.startswith("dicomweb:"):
        from medcap.data.dicom import DicomOptions
        from medcap.data.dicom.web_dataset import DicomWebDataset

        return DicomWebDataset(text, dicom or DicomOptions(), cfg)
    path = Path(text).expanduser()
    if path.is_dir() and dicom is not None and dicom.pseudonym_key:
        from medcap.data.dicom import DicomFolderDataset, holds_dicom

        if holds_dicom(path):
            return DicomFolderDataset(path, dicom, cfg)
    if path.exists():
        return _open_local(path, columns, cfg, dicom)
    if looks_like_hub_name(text) and not text.startswith("."):
        return _open_hub(text, columns, cfg)
    raise InputError(
        f"dataset {text} not found: no such file or directory; pass a dataset folder, a CSV/JSONL "
        "file, a Hugging Face dataset name (org/name), "
        "or build phantoms with `medcap data phantoms DIR`"
    )


def _open_local(
    path: Path, columns: Columns, cfg: DataConfig | None, dicom: DicomOptions | None
) -> Dataset:
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            return ParquetDataset(path, columns=columns, cfg=cfg)
        if suffix in TABLE_SUFFIXES:
            return TableDataset(path, columns=columns, cfg=cfg)
        raise InputError(
            f"{path}: unsupported dataset file type '{suffix}'; "
            "pass a .parquet, .csv, .tsv or .jsonl file or a folder"
        )
    if is_release_dir(path):
        return ReleaseDataset(path, columns=columns, cfg=cfg)
    if find_parquet_files(path):
        return ParquetDataset(path, columns=columns, cfg=cfg)
    tables = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES)
    preferred = [p for name in _TABLE_PREFERENCE for p in tables if p.name == name]
    if preferred or len(tables) == 1:
        return TableDataset((preferred or tables)[0], name=str(path), columns=columns, cfg=cfg)
    if tables:
        names = ", ".join(p.name for p in tables)
        raise InputError(
            f"{path}: several tables found ({names}); pass the CSV/JSONL file to use directly"
        )
    from medcap.data.dicom import DicomFolderDataset, DicomOptions, holds_dicom

    if holds_dicom(path):
        return DicomFolderDataset(path, dicom or DicomOptions(), cfg)  # asks for the key
    raise InputError(
        f"no dataset found in {path}: expected data/*.parquet, "
        "{split}_captions.csv with image folders, "
        "or images with a CSV/JSONL table"
    )


def _open_hub(name: str, columns: Columns, cfg: DataConfig | None) -> Dataset:
    bundled = bundle_dataset_dir(name)  # a `medcap fetch` bundle (MEDCAP_BUNDLE) first
    if bundled is not None:
        return ParquetDataset(bundled, name=name, columns=columns, cfg=cfg)
    snapshot = cached_snapshot(name)
    if snapshot is not None:
        return ParquetDataset(snapshot, name=name, columns=columns, cfg=cfg)
    if is_offline("datasets"):
        raise offline_error(name, "offline mode is on and it is not in the local cache")
    return HubDataset(name, columns=columns, cfg=cfg)
