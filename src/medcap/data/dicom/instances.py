"""What medcap reads from one DICOM instance's header: UIDs, a few allowlisted fields.

`InstanceInfo` holds the UIDs (needed to group and to pseudonymise; never stored), the
allowlisted fields (Modality, BodyPartExamined), the fields of the burned-in rule and of
the decodability check, and the values of `--keep-tag` tags. It is read from a file's
header (pixels not read) or from a DICOMweb QIDO-RS JSON object.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DICOM_MAGIC = b"DICM"
_PREAMBLE = 128
# DICOM JSON (PS3.18 F.2) tags of the fields read from QIDO-RS answers.
TAGS = {
    "StudyInstanceUID": "0020000D",
    "SeriesInstanceUID": "0020000E",
    "SOPInstanceUID": "00080018",
    "Modality": "00080060",
    "BodyPartExamined": "00180015",
    "InstanceNumber": "00200013",
    "NumberOfFrames": "00280008",
    "BurnedInAnnotation": "00280301",
    "TransferSyntaxUID": "00020010",
    "AvailableTransferSyntaxUID": "00083002",
}


@dataclass(frozen=True)
class InstanceInfo:
    """The header fields medcap uses of one instance (UIDs only in memory)."""

    study_uid: str
    series_uid: str
    sop_uid: str
    modality: str = ""
    body_part: str = ""
    instance_number: int | None = None
    frames: int = 1
    burned_in: str = ""  # BurnedInAnnotation as written (YES/NO/empty)
    transfer_syntax: str = ""
    kept: Mapping[str, str] = field(default_factory=dict)  # --keep-tag values
    path: str | None = None  # the file, for a folder source


def is_dicom_file(path: Path) -> bool:
    """Whether `path` starts with a 128-byte preamble and "DICM" (any extension or none)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_PREAMBLE + len(DICOM_MAGIC))
    except OSError:
        return False
    return head[_PREAMBLE:] == DICOM_MAGIC


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _int_or_none(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def read_instance_info(source: str | Path | bytes, keep_tags: Sequence[str] = ()) -> InstanceInfo:
    """The header fields of a DICOM file or its bytes (pixels are not read).

    Raises ValueError when the UIDs are missing (the caller skips the file with why).
    """
    import pydicom

    handle: Any = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    header = pydicom.dcmread(handle, stop_before_pixels=True, force=True)
    meta = getattr(header, "file_meta", None)
    uids = [_text(getattr(header, name, "")) for name in ("StudyInstanceUID", "SeriesInstanceUID")]
    sop = _text(getattr(header, "SOPInstanceUID", "")) or _text(
        getattr(meta, "MediaStorageSOPInstanceUID", "")
    )
    if not all(uids) or not sop:
        raise ValueError("no Study/Series/SOP Instance UID in the header")
    frames = _int_or_none(getattr(header, "NumberOfFrames", 1)) or 1
    return InstanceInfo(
        study_uid=uids[0],
        series_uid=uids[1],
        sop_uid=sop,
        modality=_text(getattr(header, "Modality", "")).upper(),
        body_part=_text(getattr(header, "BodyPartExamined", "")).upper(),
        instance_number=_int_or_none(getattr(header, "InstanceNumber", None)),
        frames=max(1, frames),
        burned_in=_text(getattr(header, "BurnedInAnnotation", "")).upper(),
        transfer_syntax=_text(getattr(meta, "TransferSyntaxUID", "")),
        kept={name: _text(getattr(header, name, "")) for name in keep_tags},
        path=None if isinstance(source, bytes) else str(source),
    )


def _json_value(item: Mapping[str, Any], tag: str) -> str:
    element = item.get(tag)
    if not isinstance(element, Mapping):
        return ""
    values = element.get("Value") or []
    if not values:
        return ""
    first = values[0]
    if isinstance(first, Mapping):  # a person name: {"Alphabetic": ...}
        return _text(first.get("Alphabetic", ""))
    return _text(values if len(values) > 1 else first)


def info_from_json(item: Mapping[str, Any], keep_tags: Sequence[str] = ()) -> InstanceInfo:
    """The header fields of one instance from a QIDO-RS answer object (DICOM JSON).

    Raises ValueError when the UIDs are missing.
    """
    from pydicom.datadict import tag_for_keyword

    def value(name: str) -> str:
        return _json_value(item, TAGS[name])

    study, series, sop = (
        value(n) for n in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
    )
    if not (study and series and sop):
        raise ValueError("QIDO-RS answer without Study/Series/SOP Instance UID")
    kept = {}
    for name in keep_tags:
        tag = tag_for_keyword(name)
        kept[name] = _json_value(item, f"{tag:08X}") if tag is not None else ""
    return InstanceInfo(
        study_uid=study,
        series_uid=series,
        sop_uid=sop,
        modality=value("Modality").upper(),
        body_part=value("BodyPartExamined").upper(),
        instance_number=_int_or_none(value("InstanceNumber")),
        frames=max(1, _int_or_none(value("NumberOfFrames")) or 1),
        burned_in=value("BurnedInAnnotation").upper(),
        transfer_syntax=value("TransferSyntaxUID") or value("AvailableTransferSyntaxUID"),
        kept=kept,
    )
