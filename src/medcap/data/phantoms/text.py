"""ROCOv2-style captions for phantom cases, written from the case's attributes.

Several sentence templates and synonyms give varied wording; every caption names the
modality and region, and the finding with its location and size when there is one
("Axial CT of the chest showing a 2 cm nodule in the right upper lobe (arrow).").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medcap.data.phantoms.spec import PhantomCase

_LEVEL_WORDS: dict[str, tuple[str, str]] = {  # (upper, lower) for lesion locations
    "chest": ("upper lobe", "lower lobe"),
    "abdomen": ("upper quadrant", "lower quadrant"),
    "head": ("frontal lobe", "occipital lobe"),
    "pelvis": ("iliac fossa", "hip region"),
}
_FRACTURE_BONES: dict[str, tuple[str, str]] = {
    "chest": ("upper rib", "lower rib"),
    "head": ("frontal bone", "occipital bone"),
    "pelvis": ("iliac wing", "femoral neck"),
}
_VESSELS: dict[str, tuple[str, str]] = {
    "head": ("middle cerebral artery", "internal carotid artery"),
    "abdomen": ("renal artery", "colic artery"),
    "pelvis": ("internal iliac artery", "common femoral artery"),
    "knee": ("popliteal artery", "anterior tibial artery"),
}
_VERTEBRA = ("L1", "L3")
_STENOSIS_GRADE = {"small": "mild", "moderate": "moderate", "large": "severe"}


def pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    """One of `options`, uniformly."""
    return options[int(rng.integers(len(options)))]


def write_caption(case: PhantomCase, rng: np.random.Generator) -> str:
    """A one- or two-sentence caption describing `case`."""
    modality = _modality_phrase(case, rng)
    region = _region_phrase(case, rng)
    short = _short_heading(case, rng)
    if case.finding == "none":
        sentence = pick(
            rng,
            [
                f"{modality} of {region} with no abnormality detected.",
                f"Normal {modality} of {region}.",
                f"{short}: no acute abnormality.",
                f"{modality} of {region} showing no focal lesion.",
                f"Unremarkable {modality} of {region}.",
            ],
        )
        return _capitalise(sentence)
    finding = _finding_phrase(case, rng)
    arrow = pick(
        rng, [" (arrow)", " (arrow)", ", indicated by the arrow", " (marked with an arrow)"]
    )
    arrow = arrow if case.has_arrow else ""
    sentence = pick(
        rng,
        [
            f"{modality} of {region} showing {finding}{arrow}.",
            f"{modality} of {region} demonstrates {finding}{arrow}.",
            f"{short}: {finding}{arrow}.",
            f"{_capitalise(finding)} on {modality} of {region}{arrow}.",
            f"{modality} of {region}. {_capitalise(finding)} is seen{arrow}.",
            f"{modality} revealing {finding}{arrow}.",
        ],
    )
    return _capitalise(sentence)


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def _size(case: PhantomCase) -> str:
    value = f"{case.size_cm:.1f}".rstrip("0").rstrip(".")
    return f"{value} cm"


def _modality_phrase(case: PhantomCase, rng: np.random.Generator) -> str:
    view = case.view
    if case.modality == "CT":
        options = [f"{view} CT", f"{view} computed tomography", "CT", f"{view} CT scan"]
        if case.contrast:
            options += [f"contrast-enhanced {view} CT", "contrast-enhanced CT"]
        else:
            options += ["non-contrast CT"]
        return pick(rng, options)
    if case.modality == "MRI":
        seq = case.sequence
        return pick(
            rng,
            [
                f"{seq}-weighted MRI",
                f"{view} {seq} MRI",
                f"{seq}-weighted MR image",
                f"{view} {seq}-weighted magnetic resonance imaging",
            ],
        )
    if case.modality == "X-ray":
        if case.region == "chest":
            return pick(rng, ["X-ray", "PA radiograph", "frontal radiograph", "plain radiograph"])
        return pick(rng, ["AP radiograph", "plain radiograph", "X-ray", "radiograph"])
    if case.modality == "ultrasound":
        return pick(
            rng,
            [
                "ultrasound",
                "ultrasonography",
                "sonographic image",
                "US image",
                "grayscale ultrasound",
            ],
        )
    if case.modality == "angiography":
        special = {"head": "cerebral angiography", "chest": "coronary angiography"}.get(case.region)
        options = ["digital subtraction angiography", "angiogram", "DSA image"]
        return pick(rng, options + [special] if special else options)
    return pick(
        rng, ["FDG PET", "PET/CT", "18F-FDG PET", "PET image", "positron emission tomography"]
    )


def _region_phrase(case: PhantomCase, rng: np.random.Generator) -> str:
    if case.region == "knee":  # the finding phrase names which knee
        return "the knee"
    options = {
        "chest": ["the chest", "the thorax"],
        "abdomen": ["the abdomen"],
        "head": ["the skull"] if case.modality == "X-ray" else ["the brain", "the head"],
        "pelvis": ["the pelvis"],
        "spine": ["the lumbar spine", "the spine"],
    }[case.region]
    return pick(rng, options)


def _short_heading(case: PhantomCase, rng: np.random.Generator) -> str:
    """`MRI brain, T2`-style heading."""
    name = {"X-ray": "X-ray", "ultrasound": "Ultrasound", "angiography": "Angiography"}.get(
        case.modality, case.modality
    )
    region = {
        "head": "brain" if case.modality != "X-ray" else "skull",
        "spine": "lumbar spine",
    }.get(case.region, case.region)
    suffix = (
        f", {case.sequence}"
        if case.sequence
        else (f", {case.view}" if case.modality == "CT" else "")
    )
    return f"{name} {region}{suffix}"


def _location_phrase(case: PhantomCase) -> str:
    side, upper = case.side, case.level == "upper"
    if case.region == "knee":
        return f"{'distal femur' if upper else 'proximal tibia'} of the {side} knee"
    if case.region == "spine":
        return f"{side} paravertebral region at {_VERTEBRA[0] if upper else _VERTEBRA[1]}"
    words = _LEVEL_WORDS[case.region]
    return f"{side} {words[0] if upper else words[1]}"


def _vessel(case: PhantomCase) -> str:
    upper = case.level == "upper"
    if case.region == "chest":
        artery = (
            "right coronary artery" if case.side == "right" else "left anterior descending artery"
        )
        return f"{'proximal' if upper else 'distal'} {artery}"
    words = _VESSELS[case.region]
    return f"{case.side} {words[0] if upper else words[1]}"


def _finding_phrase(case: PhantomCase, rng: np.random.Generator) -> str:
    f, size, side = case.finding, _size(case) if case.size_cm else "", case.side
    if f == "effusion":
        sev = case.severity
        if case.region == "chest":
            return pick(
                rng,
                [
                    f"a {sev} {side} pleural effusion",
                    f"a {sev} pleural effusion on the {side}",
                    f"a {sev} {side}-sided pleural effusion",
                ],
            )
        if case.region == "knee":
            return pick(
                rng,
                [
                    f"a {sev} joint effusion of the {side} knee",
                    f"a {sev} suprapatellar effusion in the {side} knee",
                ],
            )
        where = f"{side} lower quadrant" if case.region == "abdomen" else f"{side} pelvis"
        return pick(
            rng, [f"{sev} free fluid in the {where}", f"a {sev} fluid collection in the {where}"]
        )
    if f == "fracture":
        kind = pick(
            rng, ["a fracture", "a displaced fracture", "a fracture line", "a cortical fracture"]
        )
        if case.region == "knee":
            return f"{kind} of the {_location_phrase(case)}"
        if case.region == "spine":
            vertebra = _VERTEBRA[0] if case.level == "upper" else _VERTEBRA[1]
            return pick(
                rng,
                [
                    f"a compression fracture of {vertebra}, {side} side",
                    f"{kind} of the {side} half of the {vertebra} vertebral body",
                ],
            )
        bones = _FRACTURE_BONES[case.region]
        return f"{kind} of the {side} {bones[0] if case.level == 'upper' else bones[1]}"
    if f == "stenosis":
        grade = _STENOSIS_GRADE[case.severity or "moderate"]
        vessel = _vessel(case)
        return pick(
            rng,
            [
                f"a {grade} stenosis of the {vessel}",
                f"{grade} narrowing of the {vessel}",
                f"a focal {grade} stenosis in the {vessel}",
            ],
        )
    if f == "aneurysm":
        vessel = _vessel(case)
        return pick(
            rng,
            [
                f"a {size} aneurysm of the {vessel}",
                f"a saccular aneurysm ({size}) arising from the {vessel}",
                f"an aneurysm measuring {size} in the {vessel}",
            ],
        )
    nouns = {
        "nodule": [
            f"a {size} nodule",
            f"a nodule measuring {size}",
            f"a small nodule ({size})",
            f"a {size} nodular lesion",
        ],
        "mass": [
            f"a {size} mass",
            f"a large mass measuring {size}",
            f"a lobulated mass ({size})",
            f"a {size} soft-tissue mass",
        ],
        "cyst": [
            f"a {size} cyst",
            f"a cystic lesion ({size})",
            f"a well-defined cyst measuring {size}",
            f"a {size} simple cyst",
        ],
        "calcification": [
            f"a {size} calcification",
            f"a calcified focus ({size})",
            f"a {size} calcific density",
        ],
    }[f]
    if case.modality == "PET":
        nouns = [
            f"a {size} hypermetabolic {f}",
            f"an FDG-avid {f} ({size})",
            f"a {f} with intense uptake ({size})",
        ]
    return f"{pick(rng, nouns)} in the {_location_phrase(case)}"
