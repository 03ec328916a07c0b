"""Which DICOM instances may be indexed, and what an index may store about them.

The stored metadata is an allowlist: Modality, BodyPartExamined, the pseudonymous study
and series ids, and the tags the user keeps on purpose (`--keep-tag`). Pixels can carry
burned-in identifiers, so instances marked `BurnedInAnnotation` YES, and modalities where
burned-in text is common (DicomConfig.burned_in_modalities), are refused unless allowed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medcap.config import DicomConfig
from medcap.data.dicom.instances import InstanceInfo
from medcap.data.dicom.pseudonyms import PseudonymKey
from medcap.errors import InputError

BASE_COLUMNS: tuple[str, ...] = ("modality", "body_part", "study", "series")
# Tags that a --keep-tag cannot name: they are identifiers or UIDs (PS3.15 Annex E).
_NEVER_KEPT = frozenset(
    {
        "PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs", "PatientAddress",
        "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName",
        "InstitutionName", "InstitutionAddress", "AccessionNumber", "StudyInstanceUID",
        "SeriesInstanceUID", "SOPInstanceUID", "StudyID", "PixelData",
    }
)  # fmt: skip


def check_keep_tags(names: Sequence[str]) -> tuple[str, ...]:
    """Validate `--keep-tag` names: DICOM keywords, not an identifier from the refused list."""
    from pydicom.datadict import tag_for_keyword

    out = []
    for name in names:
        name = name.strip()
        if not name:
            continue
        if tag_for_keyword(name) is None:
            raise InputError(
                f"--keep-tag {name!r} is not a DICOM keyword; use names such as "
                "SliceThickness or Manufacturer"
            )
        if name in _NEVER_KEPT:
            raise InputError(
                f"--keep-tag {name} is a patient or study identifier and is never stored; "
                "it is how a case would be re-identified"
            )
        out.append(name)
    return tuple(dict.fromkeys(out))


def stored_columns(cfg: DicomConfig) -> tuple[str, ...]:
    """The metadata columns a DICOM case may carry into an index (the allowlist)."""
    return (*BASE_COLUMNS, *cfg.keep_tags)


def refusal(info: InstanceInfo, cfg: DicomConfig) -> str | None:
    """Why `info` must not be indexed (burned-in rule, undecodable syntax), else None."""
    if not cfg.allow_burned_in:
        if info.burned_in == "YES":
            return "BurnedInAnnotation is YES: pixels may show identifiers (--allow-burned-in)"
        if info.modality in cfg.burned_in_modalities:
            return (
                f"modality {info.modality} often has burned-in identifiers in its pixels "
                "(--allow-burned-in)"
            )
    if info.transfer_syntax and not can_decode(info.transfer_syntax):
        return (
            f"transfer syntax {info.transfer_syntax} cannot be decoded with the installed "
            "handlers (install medcap[dicom])"
        )
    return None


def can_decode(transfer_syntax: str) -> bool:
    """Whether pydicom has an available pixel decoder for `transfer_syntax`."""
    from pydicom.pixels.decoders.base import get_decoder
    from pydicom.uid import UID

    try:
        return bool(get_decoder(UID(transfer_syntax)).is_available)
    except (NotImplementedError, ValueError, KeyError):
        return False


def case_metadata(info: InstanceInfo, key: PseudonymKey) -> dict[str, Any]:
    """The allowlisted metadata of a case: modality, body part, pseudonyms, kept tags."""
    out: dict[str, Any] = {
        "modality": info.modality,
        "body_part": info.body_part,
        "study": key.pseudonym("study", info.study_uid),
        "series": key.pseudonym("series", info.series_uid),
    }
    out.update(info.kept)
    return out
