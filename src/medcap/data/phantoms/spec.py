"""What a phantom case is: modalities, regions, findings, locations, and their UMLS CUIs.

A case's attributes are drawn from `numpy.random.Generator` seeded by (seed, case index),
so case i is the same whatever the dataset size. Location follows the radiological
convention used everywhere in medcap: the patient's right is on the image's left.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

MODALITIES: tuple[str, ...] = ("CT", "MRI", "X-ray", "ultrasound", "angiography", "PET")
REGIONS: tuple[str, ...] = ("chest", "abdomen", "head", "pelvis", "knee", "spine")
FINDINGS: tuple[str, ...] = (
    "nodule",
    "mass",
    "cyst",
    "fracture",
    "effusion",
    "calcification",
    "aneurysm",
    "stenosis",
    "none",
)
SIDES: tuple[str, ...] = ("right", "left")
LEVELS: tuple[str, ...] = ("upper", "lower")

MODALITY_REGIONS: dict[str, tuple[str, ...]] = {
    "CT": REGIONS,
    "MRI": REGIONS,
    "X-ray": REGIONS,
    "ultrasound": ("chest", "abdomen", "pelvis", "knee"),
    "angiography": ("chest", "abdomen", "head", "pelvis", "knee"),
    "PET": ("chest", "abdomen", "head", "pelvis"),
}
MODALITY_FINDINGS: dict[str, tuple[str, ...]] = {
    "CT": ("nodule", "mass", "cyst", "fracture", "effusion", "calcification", "none"),
    "MRI": ("nodule", "mass", "cyst", "fracture", "effusion", "none"),
    "X-ray": ("nodule", "mass", "fracture", "effusion", "calcification", "none"),
    "ultrasound": ("nodule", "mass", "cyst", "effusion", "calcification", "none"),
    "angiography": ("aneurysm", "stenosis", "none"),
    "PET": ("nodule", "mass", "none"),
}
REGION_FINDINGS: dict[str, tuple[str, ...]] = {
    "chest": ("nodule", "mass", "cyst", "fracture", "effusion", "calcification"),
    "abdomen": ("nodule", "mass", "cyst", "effusion", "calcification"),
    "head": ("nodule", "mass", "cyst", "fracture", "calcification"),
    "pelvis": ("nodule", "mass", "cyst", "fracture", "effusion", "calcification"),
    "knee": ("mass", "cyst", "fracture", "effusion", "calcification"),
    "spine": ("mass", "cyst", "fracture", "calcification"),
}
# Fluid settles: effusions sit at one level per region (pleural base, suprapatellar recess...).
EFFUSION_LEVEL: dict[str, str] = {
    "chest": "lower",
    "abdomen": "lower",
    "pelvis": "lower",
    "knee": "upper",
}
# Diameter ranges in cm; None: the finding has no single size (fractures, effusions, stenoses).
SIZE_RANGE_CM: dict[str, tuple[float, float] | None] = {
    "nodule": (0.6, 2.5),
    "mass": (3.0, 6.5),
    "cyst": (1.0, 4.0),
    "calcification": (0.3, 1.0),
    "aneurysm": (0.5, 2.5),
    "fracture": None,
    "effusion": None,
    "stenosis": None,
    "none": None,
}
SEVERITIES: tuple[str, ...] = ("small", "moderate", "large")
FIELD_OF_VIEW_CM = 16.0  # image width in cm for every region, so a size reads the same everywhere
NONE_WEIGHT = 0.5  # "no abnormality" is drawn half as often as each finding
ARROW_PROBABILITY = 0.35

# UMLS CUIs, one table. Modality CUIs as used by ROCOv2 (FACTS.md); region and finding CUIs
# only where the concept is unambiguous. A finding without an entry gets no finding CUI.
CUI_NAMES: dict[str, str] = {
    "C0040405": "X-Ray Computed Tomography",
    "C0024485": "Magnetic Resonance Imaging",
    "C1306645": "Plain x-ray",
    "C0041618": "Ultrasonography",
    "C0002978": "angiogram",
    "C0032743": "Positron-Emission Tomography",
    "C0817096": "Chest",
    "C0000726": "Abdomen",
    "C0018670": "Head",
    "C0030797": "Pelvis",
    "C0022742": "Knee",
    "C0037949": "Vertebral column",
    "C0028259": "Nodule",
    "C0577559": "Mass of body structure",
    "C0010709": "Cyst",
    "C0016658": "Fracture",
    "C0032227": "Pleural effusion disorder",
    "C0006660": "Calcinosis",
    "C0002940": "Aneurysm",
    "C1261287": "Stenosis",
}
MODALITY_CUI: dict[str, str] = {
    "CT": "C0040405",
    "MRI": "C0024485",
    "X-ray": "C1306645",
    "ultrasound": "C0041618",
    "angiography": "C0002978",
    "PET": "C0032743",
}
REGION_CUI: dict[str, str] = {
    "chest": "C0817096",
    "abdomen": "C0000726",
    "head": "C0018670",
    "pelvis": "C0030797",
    "knee": "C0022742",
    "spine": "C0037949",
}
FINDING_CUI: dict[str, str] = {
    "nodule": "C0028259",
    "mass": "C0577559",
    "cyst": "C0010709",
    "fracture": "C0016658",
    "calcification": "C0006660",
    "aneurysm": "C0002940",
    "stenosis": "C1261287",
}


@dataclass(frozen=True)
class PhantomCase:
    """The ground truth of one phantom: what is drawn and what the caption says."""

    modality: str
    region: str
    finding: str
    side: str | None  # patient's side; "right" is drawn on the image's left
    level: str | None  # "upper" is drawn in the image's upper half
    size_cm: float | None
    severity: str | None  # effusions and stenoses
    has_arrow: bool
    view: str  # axial | coronal | frontal | sector
    sequence: str | None  # MRI weighting: T1 | T2
    contrast: bool  # CT with intravenous contrast
    color: bool  # stored as RGB (else mode L)
    image_format: str  # PNG | JPEG

    @property
    def location(self) -> str:
        """`right upper`, `left lower`, ... or `none` for a normal study."""
        return f"{self.side} {self.level}" if self.side and self.level else "none"

    def cuis(self) -> tuple[str, ...]:
        """The case's concepts: modality, region, and the finding where it has a CUI."""
        cuis = [MODALITY_CUI[self.modality], REGION_CUI[self.region]]
        if self.finding == "effusion" and self.region == "chest":
            cuis.append("C0032227")
        elif self.finding in FINDING_CUI:
            cuis.append(FINDING_CUI[self.finding])
        return tuple(cuis)

    def attributes(self) -> dict[str, Any]:
        """The attribute columns stored with the case (and returned in `Record.extra`)."""
        values = asdict(self)
        values["location"] = self.location
        return values


def sample_case(rng: np.random.Generator) -> PhantomCase:
    """Draw one case's attributes; only valid modality/region/finding combinations."""
    modality = MODALITIES[int(rng.integers(len(MODALITIES)))]
    regions = MODALITY_REGIONS[modality]
    region = regions[int(rng.integers(len(regions)))]
    allowed = [
        f
        for f in MODALITY_FINDINGS[modality]
        if f == "none" or f in _region_findings(modality, region)
    ]
    weights = np.array([NONE_WEIGHT if f == "none" else 1.0 for f in allowed])
    finding = allowed[int(rng.choice(len(allowed), p=weights / weights.sum()))]
    side: str | None = SIDES[int(rng.integers(2))]
    level: str | None = LEVELS[int(rng.integers(2))]
    if finding == "effusion":
        level = EFFUSION_LEVEL[region]
    if finding == "none":
        side = level = None
    size_range = SIZE_RANGE_CM[finding]
    size_cm = round(float(rng.uniform(*size_range)), 1) if size_range else None
    severity = SEVERITIES[int(rng.integers(3))] if finding in ("effusion", "stenosis") else None
    has_arrow = finding != "none" and bool(rng.random() < ARROW_PROBABILITY)
    view = _view(modality, region)
    sequence = ("T1", "T2")[int(rng.integers(2))] if modality == "MRI" else None
    contrast = modality == "CT" and bool(rng.random() < 0.5)
    color_probability = {"PET": 0.7, "ultrasound": 0.4}.get(modality, 0.2)
    color = bool(rng.random() < color_probability)
    image_format = "JPEG" if rng.random() < 0.3 else "PNG"
    return PhantomCase(
        modality=modality,
        region=region,
        finding=finding,
        side=side,
        level=level,
        size_cm=size_cm,
        severity=severity,
        has_arrow=has_arrow,
        view=view,
        sequence=sequence,
        contrast=contrast,
        color=color,
        image_format=image_format,
    )


def _region_findings(modality: str, region: str) -> tuple[str, ...]:
    if modality == "angiography":
        return ("aneurysm", "stenosis")
    return REGION_FINDINGS[region]


def _view(modality: str, region: str) -> str:
    if modality in ("X-ray", "angiography"):
        return "frontal"
    if modality == "ultrasound":
        return "sector"
    return "axial" if region in ("chest", "head", "pelvis") else "coronal"
