"""Link a hit's pseudonymous study id back to its StudyInstanceUID, for a viewer URL.

Only the holder of the pseudonym key can: the index stores no UID, so the linker lists
the source's studies again (the DICOM folder or DICOMweb server the index was built
from), computes each study's HMAC under the key, and keeps the pseudonym -> UID map in
memory. A pseudonym it does not know (a study added since) makes it list once more.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from urllib.parse import quote

from medcap.data.dicom.dataset import DicomOptions
from medcap.data.dicom.pseudonyms import PseudonymKey, load_pseudonym_key
from medcap.errors import InputError

_PLACEHOLDER = "{StudyInstanceUID}"
_RELIST_EVERY = 30.0  # seconds between listings caused by unknown pseudonyms


class StudyLinker:
    """Viewer URLs for study pseudonyms, from a key file and the index's sources."""

    def __init__(
        self,
        key_file: str,
        viewer_url: str,
        sources: Sequence[str],
        *,
        checks: Sequence[str] = (),
        where: str = "the index",
        token: str | None = None,
    ) -> None:
        if _PLACEHOLDER not in viewer_url:
            raise InputError(
                f"--viewer-url {viewer_url!r} has no {_PLACEHOLDER}; e.g. "
                "'http://pacs/viewer?study={StudyInstanceUID}'"
            )
        self.key: PseudonymKey = load_pseudonym_key(key_file, create=False)
        for check in checks:
            self.key.check(check, where)
        self.viewer_url = viewer_url
        self.sources = [s for s in sources if s]
        self.token = token
        self._uids: dict[str, str] | None = None
        self._listed_at = 0.0
        self._lock = threading.Lock()

    def _list(self) -> dict[str, str]:
        from medcap.data.readers import open_dataset

        found: dict[str, str] = {}
        for source in self.sources:
            options = DicomOptions(pseudonym_key=self.key.path, token=self.token)
            dataset = open_dataset(source, dicom=options)
            for uid in getattr(dataset, "study_uids", list)():
                found[self.key.pseudonym("study", uid)] = uid
        return found

    def study_uid(self, pseudonym: str) -> str | None:
        """The StudyInstanceUID of a study pseudonym, or None when the source lacks it."""
        import time

        with self._lock:
            stale = time.monotonic() - self._listed_at > _RELIST_EVERY
            if self._uids is None or (pseudonym not in self._uids and stale):
                self._uids = self._list()
                self._listed_at = time.monotonic()
            return self._uids.get(pseudonym)

    def url_for(self, metadata: object) -> str | None:
        """The viewer URL of a hit whose metadata holds a `study` pseudonym (else None)."""
        study = metadata.get("study") if isinstance(metadata, Mapping) else None
        if not isinstance(study, str) or not study:
            return None
        uid = self.study_uid(study)
        return None if uid is None else self.viewer_url.replace(_PLACEHOLDER, quote(uid))


def open_linker(
    index_manifest: object,
    key_file: str | None,
    viewer_url: str | None,
    *,
    where: str,
    token: str | None = None,
) -> StudyLinker | None:
    """A linker for an index (its manifest's sources and key checks), or None without a key
    or a viewer URL (then hits carry no link and nothing else changes)."""
    if not key_file or not viewer_url:
        if key_file or viewer_url:
            raise InputError("viewer links need both --pseudonym-key FILE and --viewer-url URL")
        return None
    sources = getattr(index_manifest, "sources", ())
    return StudyLinker(
        key_file, viewer_url, [s.dataset for s in sources],
        checks=[s.pseudonym_check for s in sources if s.pseudonym_check], where=where,
        token=token,
    )  # fmt: skip
