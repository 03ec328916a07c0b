"""`DicomDataset`: DICOM cases as a medcap Dataset, with pseudonymous ids and an allowlist.

Each case is one series (its middle instance) or one instance; its `image_id` is the
HMAC pseudonym of the series (or instance) UID, its metadata the allowlist of
medcap.data.dicom.policy. Cases the burned-in rule refuses are skipped with the reason.
The one split is `train` (the split `index build` reads by default).
"""

from __future__ import annotations

import dataclasses
import hashlib
from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

from medcap.config import DataConfig, DicomConfig, current
from medcap.data.dataset import Dataset, RawRow
from medcap.data.dicom.captions import SidecarCaptions
from medcap.data.dicom.instances import InstanceInfo
from medcap.data.dicom.policy import case_metadata, refusal, stored_columns
from medcap.data.dicom.pseudonyms import PseudonymKey, load_pseudonym_key
from medcap.data.dicom.series import DicomCase, group_cases
from medcap.errors import first_line
from medcap.types import ImageRef

SPLIT = "train"


@dataclass(frozen=True)
class DicomOptions:
    """How to read a DICOM source: the pseudonym key file, a captions CSV, the DICOM config,
    a DICOMweb bearer token, and DICOMweb restrictions (studies, QIDO filters)."""

    pseudonym_key: str | None = None
    captions: str | None = None
    cfg: DicomConfig | None = None
    token: str | None = None
    studies: tuple[str, ...] = ()
    where: tuple[tuple[str, str], ...] = ()


class DicomDataset(Dataset):
    """Base of the folder and DICOMweb readers: listing, grouping, allowlist, burned-in rule."""

    allows_empty_captions = True

    def __init__(self, name: str, options: DicomOptions, data_cfg: DataConfig | None) -> None:
        from medcap.errors import InputError

        if not options.pseudonym_key:
            raise InputError(
                f"{name} is DICOM: pass --pseudonym-key FILE (created on first use; keep it "
                "outside the index, it is what links a case back to its study)"
            )
        self.dicom = options.cfg or current().dicom
        base = data_cfg or current().data
        super().__init__(name, dataclasses.replace(base, keep_columns=stored_columns(self.dicom)))
        self.options = options
        self.key: PseudonymKey = load_pseudonym_key(options.pseudonym_key)
        self.sidecar = (
            SidecarCaptions(options.captions, base.encoding) if options.captions else None
        )
        self._cases: list[DicomCase] | None = None
        self.uncaptioned = 0  # cases without a sidecar caption (image search only)

    @property
    def pseudonym_check(self) -> str:
        """The key's check value, recorded in the manifest."""
        return self.key.check_value()

    @abstractmethod
    def _list_instances(self) -> Iterator[InstanceInfo | str]:
        """Every instance of the source, or a reason string for one that cannot be read."""

    @abstractmethod
    def _image(self, info: InstanceInfo) -> tuple[ImageRef, InstanceInfo]:
        """The encoded image (file or bytes) of one instance, with its full header fields
        (a DICOMweb listing may lack some; a folder's are already complete)."""

    def cases(self) -> list[DicomCase]:
        """The source's cases (listed once, then cached)."""
        if self._cases is None:
            found: list[InstanceInfo] = []
            for row, item in enumerate(self._list_instances()):
                if isinstance(item, str):
                    self._skip(self.name, row, None, item)
                else:
                    found.append(item)
            self._cases = group_cases(found, self.dicom.unit, self.key)
        return self._cases

    def study_uids(self) -> list[str]:
        """StudyInstanceUID of every listed case (for linking pseudonyms back; never stored)."""
        return sorted({c.instance.study_uid for c in self.cases()})

    def splits(self) -> list[str]:
        return [SPLIT]

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for case in self.cases():  # pseudonyms only: a digest of UIDs would confirm a UID
            digest.update(f"{case.case_id}:{case.instances}\n".encode())
        return digest.hexdigest()

    def _images(self, infos: list[InstanceInfo]) -> Iterator[tuple[ImageRef, InstanceInfo] | str]:
        """The image and header of each instance in order, or why it cannot be used."""
        for info in infos:
            yield self._read(info)

    def _read(self, info: InstanceInfo) -> tuple[ImageRef, InstanceInfo] | str:
        try:
            image, full = self._image(info)
        except Exception as exc:  # noqa: BLE001 - one unreadable case is skipped
            return f"cannot read the instance: {first_line(exc)}"
        return refusal(full, self.dicom) or (image, full)

    def _rows(self, split: str, *, with_images: bool = True) -> Iterator[RawRow]:
        uncaptioned = 0
        cases = self.cases()
        refused = [refusal(case.instance, self.dicom) for case in cases]
        wanted = [c.instance for c, r in zip(cases, refused, strict=True) if r is None]
        images = self._images(wanted) if with_images else iter(())
        for row, (case, problem) in enumerate(zip(cases, refused, strict=True)):
            info = case.instance
            caption = self.sidecar.caption_of(info) if self.sidecar else ""
            uncaptioned += problem is None and not caption
            image = None
            if with_images and problem is None:
                got = next(images)
                if isinstance(got, str):
                    problem = got
                else:
                    image, info = got
            yield RawRow(
                source=self.name, row=row, image_id=case.case_id, caption=caption, cuis=(),
                image=image if with_images else ImageRef(), problem=problem,
                extra=case_metadata(info, self.key),
            )  # fmt: skip
        self.uncaptioned = uncaptioned
