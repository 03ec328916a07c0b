"""A small DICOMweb client: QIDO-RS to list, WADO-RS to retrieve (standard library only).

Requests time out (DicomConfig.timeout_s) and are retried (`retries`, waiting
`retry_wait_s`, doubled each time) on connection errors, timeouts, 429 and 5xx answers.
Failures are one line naming the server and the resource; UIDs in a resource path are
elided from messages, since they identify a patient's study. A bearer token, when given,
is sent with every request and never written anywhere.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

from medcap.config import DicomConfig, current
from medcap.errors import InputError

PREFIX = "dicomweb:"
_UID_SEGMENT = re.compile(r"/(studies|series|instances)/[^/?]+")
_RETRY_STATUS = {429, 500, 502, 503, 504}
DICOM_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def split_source(source: str) -> tuple[str, str | None]:
    """`dicomweb:BASE[/studies/UID]` -> (BASE, the study UID or None)."""
    url = source.removeprefix(PREFIX)
    url = re.sub(r"^(https?):/(?!/)", r"\1://", url)  # a Path() may have eaten one slash
    if not re.match(r"^https?://[^/]+", url):
        raise InputError(
            f"{source}: expected dicomweb:http://HOST[:PORT]/PATH, e.g. "
            "dicomweb:http://127.0.0.1:8042/dicom-web"
        )
    match = re.match(r"^(.*?)/studies/([^/?]+)/?$", url)
    if match:
        return match.group(1).rstrip("/"), urllib.parse.unquote(match.group(2))
    return url.rstrip("/"), None


def _private(path: str) -> str:
    """A resource path with its study, series and instance UIDs elided."""
    return _UID_SEGMENT.sub(r"/\1/…", path)


class DicomWebClient:
    """QIDO-RS and WADO-RS against one DICOMweb base URL."""

    def __init__(self, base: str, *, token: str | None = None, cfg: DicomConfig | None = None):
        self.base = base.rstrip("/")
        self.token = token
        self.cfg = cfg or current().dicom

    def _request(self, path: str, params: Sequence[tuple[str, str]], accept: str) -> bytes:
        query = urllib.parse.urlencode(list(params))
        url = f"{self.base}{path}" + (f"?{query}" if query else "")
        headers = {"Accept": accept}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        wait = self.cfg.retry_wait_s
        shown = self.base + _private(path)
        problem = ""
        for attempt in range(self.cfg.retries + 1):
            if attempt:
                time.sleep(wait)
                wait *= 2
            try:
                request = urllib.request.Request(url, headers=headers)
                with urllib.request.urlopen(request, timeout=self.cfg.timeout_s) as reply:
                    body: bytes = reply.read()
                    return body
            except urllib.error.HTTPError as exc:
                problem = f"HTTP {exc.code} {exc.reason}"
                if exc.code in (401, 403):
                    raise InputError(
                        f"DICOMweb {shown}: {problem}; pass a valid --dicomweb-token"
                    ) from None
                if exc.code not in _RETRY_STATUS:
                    raise InputError(
                        f"DICOMweb {shown}: {problem}; check the URL and the study UID"
                    ) from None
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                problem = str(reason) or type(exc).__name__
        raise InputError(
            f"DICOMweb {shown}: {problem} after {self.cfg.retries + 1} tries; check that the "
            "server is running and the URL is right"
        )

    def qido(self, path: str, params: Sequence[tuple[str, str]] = ()) -> list[dict[str, Any]]:
        """A QIDO-RS search: the answer's DICOM JSON objects (an empty answer is [])."""
        body = self._request(path, params, "application/dicom+json")
        if not body.strip():
            return []
        try:
            found = json.loads(body)
        except ValueError:
            raise InputError(
                f"DICOMweb {self.base + _private(path)}: the answer is not DICOM JSON; "
                "check that the URL is the server's DICOMweb root"
            ) from None
        return [item for item in found if isinstance(item, dict)] if isinstance(found, list) else []

    def studies(self, where: Sequence[tuple[str, str]] = ()) -> list[str]:
        """StudyInstanceUIDs matching QIDO-RS filters (`[("Modality", "CT")]`)."""
        params = [*where, ("includefield", "0020000D")]
        uids = []
        for item in self.qido("/studies", params):
            value = (item.get("0020000D") or {}).get("Value") or []
            if value:
                uids.append(str(value[0]))
        return uids

    def instances(self, study: str, fields: Sequence[str]) -> list[dict[str, Any]]:
        """QIDO-RS objects of a study's instances, with `fields` (DICOM JSON tags) included."""
        params = [("includefield", f) for f in fields]
        return self.qido(f"/studies/{urllib.parse.quote(study)}/instances", params)

    def retrieve(self, study: str, series: str, sop: str) -> bytes:
        """WADO-RS: one instance as DICOM bytes (its stored transfer syntax)."""
        path = "/studies/{}/series/{}/instances/{}".format(
            *(urllib.parse.quote(u) for u in (study, series, sop))
        )
        body = self._request(path, (), DICOM_ACCEPT)
        return first_part(body, where=self.base + _private(path))


def first_part(body: bytes, *, where: str) -> bytes:
    """The first part of a multipart/related body (or the body, when it is plain DICOM)."""
    if body[128:132] == b"DICM":
        return body
    start = body.find(b"--")
    if start < 0:
        raise InputError(f"DICOMweb {where}: the answer is not multipart/related")
    boundary = body[start : body.find(b"\r\n", start)]
    header_end = body.find(b"\r\n\r\n", start)
    end = body.find(b"\r\n" + boundary, header_end)
    if header_end < 0 or end < 0:
        raise InputError(f"DICOMweb {where}: a truncated multipart answer; try again")
    return body[header_end + 4 : end]
