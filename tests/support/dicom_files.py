"""DICOM test files: phantom images saved as CT/MR/CR instances with realistic patient tags.

`write_study` writes one study (series x instances) with pydicom; `Markers` plants a unique
string in every PS3.15 Annex E attribute these files carry (patient, physician,
institution, dates, identifiers, UIDs) so a test can grep every byte medcap writes for them.
"""

from __future__ import annotations

import io
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from medcap.data.phantoms.generate import make_phantom

# Annex E attributes set to a marker (text VRs) in every file.
TEXT_TAGS = (
    "PatientName", "PatientID", "IssuerOfPatientID", "OtherPatientIDs", "OtherPatientNames",
    "PatientBirthName", "PatientMotherBirthName", "PatientAddress", "PatientTelephoneNumbers",
    "MilitaryRank", "BranchOfService", "EthnicGroup", "Occupation", "AdditionalPatientHistory",
    "PatientComments", "MedicalRecordLocator", "ReferringPhysicianName",
    "ReferringPhysicianAddress", "PerformingPhysicianName", "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord", "RequestingPhysician", "OperatorsName", "InstitutionName",
    "InstitutionAddress", "InstitutionalDepartmentName", "StationName", "AccessionNumber",
    "StudyID", "StudyDescription", "SeriesDescription", "ProtocolName", "DeviceSerialNumber",
    "ImageComments", "DerivationDescription", "RequestedProcedureDescription",
    "PerformedProcedureStepID", "PerformedProcedureStepDescription", "ScheduledProcedureStepID",
    "RequestedProcedureID", "AdmissionID", "PatientState", "PregnancyStatus",
    "ResponsiblePerson", "ResponsibleOrganization", "PatientInsurancePlanCodeSequence",
)  # fmt: skip
DATE_TAGS = (
    "PatientBirthDate", "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate",
    "InstanceCreationDate",
)  # fmt: skip
TIME_TAGS = ("StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime", "PatientBirthTime")
_SKIP_VR = {"SQ", "US", "SS", "UL", "SL", "FL", "FD", "OB", "OW", "AT"}


def new_uid() -> str:
    """A fresh, unique UID under the 2.25 (UUID) root."""
    return "2.25." + str(int.from_bytes(secrets.token_bytes(15), "big"))


@dataclass
class Markers:
    """Unique strings planted in the files; `all()` is what must never be found."""

    prefix: str = field(default_factory=lambda: "MKR" + secrets.token_hex(3).upper())
    planted: set[str] = field(default_factory=set)

    def text(self, tag: str) -> str:
        value = f"{self.prefix}{tag[:10].upper()}{secrets.token_hex(2).upper()}"
        self.planted.add(value)
        return value

    def date(self) -> str:
        value = f"19{secrets.randbelow(50) + 10:02d}{secrets.randbelow(12) + 1:02d}"
        value += f"{secrets.randbelow(27) + 1:02d}"
        self.planted.add(value)
        return value

    def uid(self) -> str:
        value = new_uid()
        self.planted.add(value)
        return value


_MODALITY_SETUP = {  # class UID, photometric, rescale, window
    "CT": ("1.2.840.10008.5.1.4.1.1.2", -1024.0, (40.0, 400.0)),
    "MR": ("1.2.840.10008.5.1.4.1.1.4", 0.0, None),
    "CR": ("1.2.840.10008.5.1.4.1.1.1", 0.0, None),
    "US": ("1.2.840.10008.5.1.4.1.1.6.1", 0.0, None),
}


def phantom_pixels(index: int, size: int) -> tuple[np.ndarray, str]:
    """A phantom image (uint16, size x size) and its caption."""
    _case, data, caption = make_phantom(7, index, size)
    gray = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.uint16)
    return gray * 8 + 600, caption


def write_instance(
    path: Path,
    *,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    modality: str,
    number: int,
    pixels: np.ndarray,
    markers: Markers | None = None,
    body_part: str = "CHEST",
    burned_in: str | None = None,
) -> None:
    """One single-frame instance with realistic patient tags (markers where given)."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    sop_class, intercept, window = _MODALITY_SETUP[modality]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = modality
    ds.BodyPartExamined = body_part
    ds.InstanceNumber = number
    ds.SeriesNumber = 1
    ds.PatientName = "DOE^JANE"
    ds.PatientID = "PID-0001"
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "F"
    ds.StudyDate = "20260115"
    ds.InstitutionName = "General Hospital"
    if markers is not None:
        for name in TEXT_TAGS:
            tag = tag_for_keyword(name)
            if tag is None or dictionary_VR(tag) in _SKIP_VR:
                continue
            vr = dictionary_VR(tag)
            value = markers.text(name)
            if vr == "PN":
                value = value + "^" + markers.text(name + "G")
            setattr(ds, name, value[:16] if vr in ("SH", "CS") else value)
            if vr in ("SH", "CS"):
                markers.planted.add(value[:16])
        for name in DATE_TAGS:
            setattr(ds, name, markers.date())
        for name in TIME_TAGS:
            setattr(ds, name, "101010")
        ds.FrameOfReferenceUID = markers.uid()
        markers.planted.update({study_uid, series_uid, sop_uid})
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = intercept
    ds.RescaleSlope = 1.0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def write_study(
    out: Path,
    *,
    first_index: int,
    modality: str = "CT",
    series: int = 1,
    instances: int = 3,
    size: int = 64,
    markers: Markers | None = None,
    suffix: str = ".dcm",
    burned_in: str | None = None,
) -> dict[str, object]:
    """Write one study under `out`; returns its UIDs and the captions by series UID."""
    study_uid = markers.uid() if markers else new_uid()
    info: dict[str, object] = {"study": study_uid, "series": [], "captions": {}, "sops": []}
    index = first_index
    for s in range(series):
        series_uid = markers.uid() if markers else new_uid()
        info["series"].append(series_uid)  # type: ignore[attr-defined]
        for i in range(instances):
            pixels, caption = phantom_pixels(index, size)
            sop = markers.uid() if markers else new_uid()
            info["sops"].append(sop)  # type: ignore[attr-defined]
            if i == (instances - 1) // 2:
                info["captions"][series_uid] = caption  # type: ignore[index]
            write_instance(
                out / f"s{first_index}" / f"r{s}" / f"i{i}{suffix}",
                study_uid=study_uid, series_uid=series_uid, sop_uid=sop, modality=modality,
                number=i + 1, pixels=pixels, markers=markers, burned_in=burned_in,
            )  # fmt: skip
            index += 1
    return info


def _parquet_text(path: Path) -> bytes:
    """A parquet file's decoded cells (compressed pages would hide a marker from a byte grep)."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception:  # noqa: BLE001 - not readable as parquet: its raw bytes are scanned anyway
        return b""
    return repr(table.to_pylist()).encode("utf-8", "replace")


def files_under(*roots: Path) -> list[Path]:
    """Every file under `roots` (a root that is a file counts as itself)."""
    out: list[Path] = []
    for root in roots:
        if root.is_file():
            out.append(root)
        elif root.is_dir():
            out.extend(sorted(p for p in root.rglob("*") if p.is_file()))
    return out


def find_markers(
    markers: set[str], files: list[Path], texts: dict[str, str | bytes]
) -> list[tuple[str, str]]:
    """(where, marker) for every planted marker found in `files` (raw bytes and decoded
    parquet cells) or in `texts` (captured output, HTTP bodies, page source)."""
    found = []
    needles = [(m, m.encode()) for m in sorted(markers)]
    hay: list[tuple[str, bytes]] = []
    for path in files:
        data = path.read_bytes()
        hay.append((str(path), data))
        if path.suffix == ".parquet":
            hay.append((f"{path} (decoded)", _parquet_text(path)))
    for name, text in texts.items():
        hay.append((name, text if isinstance(text, bytes) else text.encode("utf-8", "replace")))
    for where, data in hay:
        lowered = data.lower()
        for marker, needle in needles:
            if needle in data or needle.lower() in lowered:
                found.append((where, marker))
    return found
