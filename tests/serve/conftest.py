"""Service test fixtures: a phantom index with awkward image ids, and one shared server."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.serve.served import Server, serving

# ids a URL must quote: a slash (one looks like the thumbnail route), ?, #, %, &, space,
# and non-ASCII letters
ODD_IDS = ("case 1/a?b#c%2F&k=1", "ünï/thumbnail")
UPLOAD_LIMIT = 300_000  # bytes; the shared server's serve.max_upload_bytes
BATCH_WAIT_MS = 100  # the shared server waits this long to fill a batch of BATCH_MAX
BATCH_MAX = 4
SHARED_SETTINGS = (
    f"serve.max_upload_bytes={UPLOAD_LIMIT}",
    f"serve.batch_max_wait_ms={BATCH_WAIT_MS}",
    f"serve.batch_max_size={BATCH_MAX}",
)


@pytest.fixture(scope="session")
def serve_index_dir(
    phantom_index_dir: Path,
    phantom_dataset: Any,
    trained_encoder: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """The shared phantom index plus two valid-split cases under ODD_IDS."""
    from medcap.index import add_to_index
    from medcap.retrieval.thumbnails import thumbnailer
    from medcap.types import Record

    out = tmp_path_factory.mktemp("serve_index") / "index"
    shutil.copytree(phantom_index_dir, out)
    source = list(phantom_dataset.records("valid"))[: len(ODD_IDS)]
    odd = [
        Record(image_id, r.image, r.caption, r.cuis, "train", r.extra)
        for image_id, r in zip(ODD_IDS, source, strict=True)
    ]
    add_to_index(out, odd, trained_encoder, make_thumbnail=thumbnailer(32))
    return out


@pytest.fixture(scope="session")
def query_images(phantom_dataset: Any, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """PNG files of six test-split phantoms (not in the index), as a client would send."""
    from medcap.data.images import load_image

    folder = tmp_path_factory.mktemp("serve_queries")
    paths = []
    for record in list(phantom_dataset.records("test"))[:6]:
        path = folder / f"{record.image_id}.png"
        load_image(record.image).save(path, format="PNG")
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def library_index(serve_index_dir: Path) -> Any:
    """`medcap.open_index(serve_index_dir)` in the test process: the reference answers."""
    import medcap

    return medcap.open_index(serve_index_dir, device="cpu")


@pytest.fixture(scope="session")
def server(serve_index_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`medcap serve` over serve_index_dir, shared by the service tests (SHARED_SETTINGS)."""
    log = tmp_path_factory.mktemp("serve_logs") / "shared.log"
    with serving(serve_index_dir, log, settings=SHARED_SETTINGS) as running:
        yield running
