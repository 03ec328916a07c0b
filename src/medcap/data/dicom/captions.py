"""Captions of DICOM cases from a sidecar CSV keyed by a UID column.

The CSV has a `caption` column and one of `SOPInstanceUID`, `SeriesInstanceUID`,
`StudyInstanceUID`; a case takes the caption of its instance, else its series, else its
study. The UIDs stay in memory; only the caption text reaches the index.
"""

from __future__ import annotations

from pathlib import Path

from medcap.data.dicom.instances import InstanceInfo
from medcap.data.table_reader import iter_table
from medcap.errors import InputError

UID_COLUMNS = ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")


class SidecarCaptions:
    """UID -> caption, read once from the sidecar CSV."""

    def __init__(self, path: str | Path, encoding: str = "utf-8") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(
                f"captions file {self.path} does not exist; pass a CSV with --captions"
            )
        self.by_uid: dict[str, str] = {}
        for number, row in enumerate(iter_table(self.path, encoding), start=2):
            if "caption" not in row:
                raise InputError(f"{self.path}: no `caption` column; add one")
            uid_column = next((c for c in UID_COLUMNS if (row.get(c) or "").strip()), None)
            if uid_column is None:
                raise InputError(
                    f"{self.path} row {number}: no UID; fill one of {', '.join(UID_COLUMNS)}"
                )
            self.by_uid[str(row[uid_column]).strip()] = str(row.get("caption") or "").strip()

    def caption_of(self, info: InstanceInfo) -> str:
        """The caption of an instance's case ("" when the sidecar has none for it)."""
        for uid in (info.sop_uid, info.series_uid, info.study_uid):
            if uid in self.by_uid:
                return self.by_uid[uid]
        return ""
