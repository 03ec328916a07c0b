"""A folder of DICOM files as a dataset: recursive, files recognised by content.

Any file whose bytes 128-131 are "DICM" is read, whatever its extension (or none); other
files (a sidecar CSV, a DICOMDIR-less export's README) are ignored. Headers are read
without pixels; pixels are decoded by medcap.data.images when the case is embedded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from medcap.config import DataConfig
from medcap.data.dicom.dataset import DicomDataset, DicomOptions
from medcap.data.dicom.instances import InstanceInfo, is_dicom_file, read_instance_info
from medcap.errors import first_line
from medcap.types import ImageRef


def dicom_files(root: Path) -> Iterator[Path]:
    """DICOM files under `root`, recursively, in sorted order (symlinked folders not followed)."""
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder) / name
            if name != "DICOMDIR" and is_dicom_file(path):
                yield path


def holds_dicom(root: Path, probe: int = 200) -> bool:
    """Whether one of the first `probe` files under `root` is DICOM (cheap detection)."""
    for seen, (folder, _dirs, files) in enumerate(os.walk(root)):
        for name in files:
            if is_dicom_file(Path(folder) / name):
                return True
        if seen > probe:
            break
    return False


class DicomFolderDataset(DicomDataset):
    """The DICOM files under a folder, one case per series (or instance)."""

    def __init__(
        self, root: str | Path, options: DicomOptions, data_cfg: DataConfig | None = None
    ) -> None:
        self.root = Path(root)
        super().__init__(str(self.root), options, data_cfg)

    def _list_instances(self) -> Iterator[InstanceInfo | str]:
        keep = self.dicom.keep_tags
        for path in dicom_files(self.root):
            try:
                yield read_instance_info(path, keep)
            except Exception as exc:  # noqa: BLE001 - one unreadable file is skipped with why
                yield f"unreadable DICOM header: {first_line(exc)}"

    def _image(self, info: InstanceInfo) -> tuple[ImageRef, InstanceInfo]:
        return ImageRef(path=info.path, store_path=False), info
