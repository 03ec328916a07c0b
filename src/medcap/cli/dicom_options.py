"""Options of the commands that read DICOM sources (a folder, `dicomweb:URL`)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from medcap.cli.options import choice_option
from medcap.config import DEFAULTS, DicomUnit, current, replace_set
from medcap.errors import InputError

_DC = DEFAULTS.dicom

PseudonymKeyOption = Annotated[
    str | None,
    typer.Option(
        "--pseudonym-key",
        help="DICOM: key file for pseudonymous case ids (created with 0600 on first use); "
        "keep it outside the index.",
    ),
]
CaptionsOption = Annotated[
    str | None,
    typer.Option(
        "--captions",
        help="DICOM: CSV with a caption column and a SOPInstanceUID, SeriesInstanceUID or "
        "StudyInstanceUID column.",
    ),
]
DicomUnitOption = Annotated[
    str | None,
    choice_option(DicomUnit, "--dicom-unit", f"DICOM: one case per ... (default: {_DC.unit})"),
]
KeepTagOption = Annotated[
    list[str] | None,
    typer.Option(
        "--keep-tag", help="DICOM: also store this header keyword (repeatable; in the manifest)."
    ),
]
AllowBurnedInOption = Annotated[
    bool,
    typer.Option(
        "--allow-burned-in",
        help="DICOM: index BurnedInAnnotation=YES instances and "
        f"{'/'.join(_DC.burned_in_modalities)} (pixels may show identifiers).",
    ),
]
DicomwebTokenOption = Annotated[
    str | None,
    typer.Option(
        "--dicomweb-token",
        envvar="MEDCAP_DICOMWEB_TOKEN",
        help="DICOMweb: bearer token (or MEDCAP_DICOMWEB_TOKEN).",
        show_envvar=False,
    ),
]
StudyOption = Annotated[
    list[str] | None,
    typer.Option("--study", help="DICOMweb: only this StudyInstanceUID (repeatable)."),
]
QidoWhereOption = Annotated[
    list[str] | None,
    typer.Option(
        "--where", help="DICOMweb: QIDO-RS filter KEY=VALUE, e.g. Modality=CT (repeatable)."
    ),
]

ViewerUrlOption = Annotated[
    str | None,
    typer.Option(
        "--viewer-url",
        help="DICOM: link each hit to its study, e.g. 'http://pacs/viewer?study="
        "{StudyInstanceUID}' (needs --pseudonym-key).",
    ),
]


def check_viewer_links(index_dir: Any, key: str | None, viewer_url: str | None) -> None:
    """Refuse, before anything starts, a viewer URL without a key (or the reverse), a URL
    without {StudyInstanceUID}, or a key other than the one the index was built with."""
    from pathlib import Path

    from medcap.data.dicom.links import open_linker
    from medcap.index.manifest import read_manifest

    if not key and not viewer_url:
        return
    manifest = read_manifest(Path(index_dir), verify=False)
    open_linker(manifest, key, viewer_url, where=str(index_dir))


def parse_qido_filters(items: list[str] | None) -> tuple[tuple[str, str], ...]:
    """`KEY=VALUE` pairs (QIDO-RS query parameters)."""
    out = []
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--where {item!r} must be KEY=VALUE, e.g. Modality=CT")
        out.append((key.strip(), value.strip()))
    return tuple(out)


def dicom_options(
    *,
    pseudonym_key: str | None,
    captions: str | None = None,
    unit: str | None = None,
    keep_tags: list[str] | None = None,
    allow_burned_in: bool = False,
    token: str | None = None,
    studies: list[str] | None = None,
    where: list[str] | None = None,
) -> Any:
    """The DicomOptions of a command line (the active config's `dicom` section underneath)."""
    from medcap.data.dicom import DicomOptions
    from medcap.data.dicom.policy import check_keep_tags

    cfg = replace_set(
        current().dicom,
        unit=unit,
        allow_burned_in=allow_burned_in or None,
        keep_tags=check_keep_tags(keep_tags) if keep_tags else None,
    )
    return DicomOptions(
        pseudonym_key=pseudonym_key, captions=captions, cfg=cfg, token=token,
        studies=tuple(studies or ()), where=parse_qido_filters(where),
    )  # fmt: skip
