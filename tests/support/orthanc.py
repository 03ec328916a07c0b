"""A real Orthanc (Debian packages `orthanc`, `orthanc-dicomweb`) for tests.

`running_orthanc` starts it on 127.0.0.1 on free HTTP and DICOM ports with a temporary
JSON configuration and storage folder (remote access off, no authentication, the
DICOMweb plugin loaded), waits until it answers, and always stops it (SIGTERM, then
SIGKILL of its process group). `orthanc_missing()` says why it cannot run here, if so.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.app.served_app import free_port

PLUGIN_DIRS = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc"))
READY_TIMEOUT_S = 120


def _plugin() -> Path | None:
    for folder in PLUGIN_DIRS:
        for path in sorted(folder.glob("libOrthancDicomWeb.so*")) if folder.is_dir() else ():
            return path
    return None


def orthanc_missing() -> str | None:
    """Why Orthanc with DICOMweb cannot run here (None: it can)."""
    if shutil.which("Orthanc") is None:
        return "Orthanc is not installed (Debian package orthanc; `make test` installs it as root)"
    if _plugin() is None:
        return "the Orthanc DICOMweb plugin is not installed (Debian package orthanc-dicomweb)"
    return None


@dataclass
class Orthanc:
    """A running Orthanc: its REST root, DICOMweb root and process."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def upload(self, files: Iterable[Path]) -> int:
        """POST each DICOM file to /instances (the REST API); returns how many were stored."""
        stored = 0
        for path in files:
            request = urllib.request.Request(
                f"{self.url}/instances", data=path.read_bytes(), method="POST",
                headers={"Content-Type": "application/dicom"},
            )  # fmt: skip
            with urllib.request.urlopen(request, timeout=60) as reply:
                answer = json.loads(reply.read())
            stored += answer.get("Status") in ("Success", "AlreadyStored")
        return stored

    def delete_study(self, study_uid: str) -> None:
        """Delete a study by its StudyInstanceUID (REST: /tools/lookup, then DELETE)."""
        request = urllib.request.Request(
            f"{self.url}/tools/lookup", data=study_uid.encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=60) as reply:
            found = json.loads(reply.read())
        for item in found:
            if item.get("Type") == "Study":
                delete = urllib.request.Request(f"{self.url}{item['Path']}", method="DELETE")
                urllib.request.urlopen(delete, timeout=60).close()


def _alive(url: str) -> bool:
    with (
        contextlib.suppress(OSError, urllib.error.URLError),
        urllib.request.urlopen(f"{url}/system", timeout=3) as reply,
    ):
        return bool(reply.status == 200)
    return False


@contextlib.contextmanager
def running_orthanc(work: Path) -> Iterator[Orthanc]:
    """Orthanc on 127.0.0.1 with a fresh storage under `work`; stopped even on failure."""
    work.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "medcap-test",
        "StorageDirectory": str(work / "storage"),
        "IndexDirectory": str(work / "storage"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "HttpServerEnabled": True,
        "DicomServerEnabled": True,
        "Plugins": [str(_plugin())],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Ssl": False},
        "HttpThreadsCount": 8,
    }
    config_path = work / "orthanc.json"
    config_path.write_text(json.dumps(config))
    log = work / "orthanc.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["Orthanc", str(config_path)], stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    server = Orthanc(f"http://127.0.0.1:{http_port}", proc, log)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _alive(server.url):
            if proc.poll() is not None:
                raise AssertionError(f"Orthanc exited with {proc.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"Orthanc not up after {READY_TIMEOUT_S} s:\n{log.read_text()}"
                )
            time.sleep(0.2)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
