"""A small stand-in for the Hugging Face Hub's HTTP API on 127.0.0.1, for `medcap fetch`.

It answers the four requests huggingface_hub's `repo_info`, `list_repo_tree` and
`snapshot_download` make (revision info, the recursive tree listing, HEAD and GET of
`resolve/<commit>/<file>`), for repositories held in memory, so the real client downloads
real files over a real socket. Files over 1 kB are announced as LFS files with their sha256,
as the hub does for weights.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

LFS_MIN_BYTES = 1024


@dataclass
class FakeRepo:
    """One repository: its commit id and files (path -> bytes)."""

    kind: str  # model | dataset
    repo: str
    commit: str
    files: dict[str, bytes]


def repo_from_folder(kind: str, repo: str, folder: Path, commit: str) -> FakeRepo:
    """A FakeRepo holding every file under `folder`."""
    files = {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
    return FakeRepo(kind, repo, commit, files)


def _tree_entry(path: str, data: bytes) -> dict[str, object]:
    entry: dict[str, object] = {
        "type": "file",
        "path": path,
        "size": len(data),
        "oid": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(),
    }
    if len(data) > LFS_MIN_BYTES:
        entry["lfs"] = {
            "oid": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "pointerSize": 134,
        }
    return entry


class _Handler(BaseHTTPRequestHandler):
    repos: dict[tuple[str, str], FakeRepo] = {}
    requests: list[str] = []

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _repo(self, kind: str, repo: str, revision: str) -> FakeRepo | None:
        found = self.repos.get((kind, repo))
        return found if found and revision in ("main", found.commit) else None

    def _send(
        self, status: int, body: bytes, headers: dict[str, str], *, head: bool = False
    ) -> None:
        self.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, data: object) -> None:
        self._send(200, json.dumps(data).encode(), {"Content-Type": "application/json"})

    def _not_found(self, head: bool = False) -> None:
        self._send(404, b'{"error": "not found"}', {"X-Error-Code": "RepoNotFound"}, head=head)

    def _serve(self, head: bool) -> None:
        path = unquote(urlparse(self.path).path)
        self.requests.append(f"{self.command} {path}")
        api = re.match(r"^/api/(models|datasets)/([^/]+/[^/]+)/(revision|tree)/([^/]+)/?$", path)
        if api:
            kind, repo, what, revision = api.groups()
            found = self._repo(kind[:-1], repo, revision)
            if found is None:
                return self._not_found(head)
            if what == "revision":
                siblings = [{"rfilename": f} for f in found.files]
                return self._json({"id": repo, "sha": found.commit, "siblings": siblings})
            return self._json([_tree_entry(p, d) for p, d in sorted(found.files.items())])
        resolve = re.match(r"^/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
        if resolve:
            prefix, repo, revision, filename = resolve.groups()
            found = self._repo("dataset" if prefix else "model", repo, revision)
            if found is None or filename not in found.files:
                return self._not_found(head)
            data = found.files[filename]
            entry = _tree_entry(filename, data)
            lfs = entry.get("lfs")
            etag = lfs["oid"] if isinstance(lfs, dict) else entry["oid"]
            headers = {"X-Repo-Commit": found.commit, "ETag": f'"{etag}"'}
            return self._send(200, data, headers, head=head)
        return self._not_found(head)

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self._serve(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(head=True)


@contextmanager
def fake_hub(repos: list[FakeRepo]) -> Iterator[tuple[str, list[str]]]:
    """Serve `repos` on 127.0.0.1; yields (endpoint URL, log of requests); always stops."""
    handler = type(
        "Handler", (_Handler,), {"repos": {(r.kind, r.repo): r for r in repos}, "requests": []}
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)
