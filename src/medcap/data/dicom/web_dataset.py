"""A DICOMweb server (e.g. Orthanc's DICOMweb plugin) as a dataset.

`dicomweb:http://HOST:PORT/dicom-web` lists studies with QIDO-RS (restricted by
`--study UID` or QIDO filters such as `Modality=CT`), then each study's instances with
the fields the allowlist and the burned-in rule need; `.../studies/UID` names one study.
The chosen instances are retrieved with WADO-RS, DicomConfig.workers at a time, in order.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from medcap.config import DataConfig
from medcap.data.dicom.dataset import DicomDataset, DicomOptions
from medcap.data.dicom.instances import TAGS, InstanceInfo, info_from_json, read_instance_info
from medcap.data.dicom.web import DicomWebClient, split_source
from medcap.errors import InputError, first_line
from medcap.types import ImageRef

_FIELDS = tuple(
    TAGS[name]
    for name in (
        "Modality", "BodyPartExamined", "InstanceNumber", "NumberOfFrames",
        "BurnedInAnnotation", "AvailableTransferSyntaxUID",
    )
)  # fmt: skip


class DicomWebDataset(DicomDataset):
    """The instances a DICOMweb server lists, one case per series (or instance)."""

    def __init__(
        self, source: str, options: DicomOptions, data_cfg: DataConfig | None = None
    ) -> None:
        base, study = split_source(source)
        self.base = base
        self.only_studies = (study,) if study else tuple(options.studies)
        super().__init__(f"dicomweb:{base}", options, data_cfg)
        self.client = DicomWebClient(base, token=options.token, cfg=self.dicom)

    def _list_instances(self) -> Iterator[InstanceInfo | str]:
        from pydicom.datadict import tag_for_keyword

        studies = list(self.only_studies) or self.client.studies(self.options.where)
        kept = tuple(f"{tag_for_keyword(name):08X}" for name in self.dicom.keep_tags)
        for study in studies:
            for item in self.client.instances(study, (*_FIELDS, *kept)):
                try:
                    yield info_from_json(item, self.dicom.keep_tags)
                except ValueError as exc:
                    yield first_line(exc)

    def _image(self, info: InstanceInfo) -> tuple[ImageRef, InstanceInfo]:
        data = self.client.retrieve(info.study_uid, info.series_uid, info.sop_uid)
        full = read_instance_info(data, self.dicom.keep_tags)  # the burned-in rule again
        return ImageRef(data=data, store_path=False), full

    def _images(self, infos: list[InstanceInfo]) -> Iterator[tuple[ImageRef, InstanceInfo] | str]:
        """WADO-RS retrievals `workers` at a time, yielded in order, a bounded window ahead."""
        window = self.dicom.workers * 2
        with ThreadPoolExecutor(self.dicom.workers, thread_name_prefix="wado") as pool:
            pending: list[Future[tuple[ImageRef, InstanceInfo] | str]] = []
            for info in infos:
                pending.append(pool.submit(self._read, info))
                if len(pending) >= window:
                    yield pending.pop(0).result()
            for future in pending:
                yield future.result()


def study_query_images(source: str, token: str | None = None) -> list[tuple[str, Any]]:
    """(name, RGB image) of each series of the study `dicomweb:BASE/studies/UID` (its middle
    instance, decoded as an indexed case would be): query images for `medcap search`."""
    from medcap.data.dicom.pseudonyms import PseudonymKey
    from medcap.data.dicom.series import group_cases
    from medcap.data.images import load_image

    base, study = split_source(source)
    if study is None:
        raise InputError(f"{source}: a search query names one study: dicomweb:BASE/studies/UID")
    client = DicomWebClient(base, token=token)
    infos = [info_from_json(item) for item in client.instances(study, _FIELDS)]
    if not infos:
        raise InputError(f"{source}: the server lists no instance of this study")
    ordering = PseudonymKey("", b"query")  # only orders the series; nothing is stored
    out = []
    for number, case in enumerate(group_cases(infos, "series", ordering), start=1):
        info = case.instance
        data = client.retrieve(info.study_uid, info.series_uid, info.sop_uid)
        out.append((f"{source} (series {number})", load_image(ImageRef(data=data))))
    return out
