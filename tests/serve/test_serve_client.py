"""`medcap.Client` against a real server: the library's own hit types and answers."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import medcap
from medcap.errors import ServiceError
from tests.serve.conftest import ODD_IDS
from tests.serve.served import Server
from tests.serve.test_serve_search import TOL


def _same(hits: list[medcap.Hit], expected: list[medcap.Hit]) -> None:
    assert [h.image_id for h in hits] == [h.image_id for h in expected]
    assert all(abs(a.score - b.score) <= TOL for a, b in zip(hits, expected, strict=True))
    assert [h.rank for h in hits] == [h.rank for h in expected]
    assert [dict(h.metadata) for h in hits] == [dict(h.metadata) for h in expected]


def test_search_takes_paths_bytes_pil_images_and_arrays(
    server: Server, library_index: Any, query_images: list[Path]
) -> None:
    client = medcap.Client(server.url)
    path = query_images[2]
    expected = library_index.search(str(path), k=4, mode="images")[0]
    image = Image.open(path)
    for query in (path, str(path), path.read_bytes(), image, np.asarray(image)):
        hits = client.search(query, k=4, mode="images")
        assert all(isinstance(h, medcap.Hit) for h in hits)
        _same(hits, expected)


def test_search_by_text_with_filters(server: Server, library_index: Any) -> None:
    client = medcap.Client(server.url)
    _same(
        client.search(text="CT of the chest", k=5, modality=["CT", "MRI"]),
        library_index.search(text="CT of the chest", k=5, where={"modality": ["CT", "MRI"]})[0],
    )
    _same(
        client.search(text="a cyst", where={"split": "train"}, mode="captions"),
        library_index.search(text="a cyst", mode="captions", where={"split": "train"})[0],
    )


def test_image_filters_and_case_neighbours(
    server: Server, library_index: Any, query_images: list[Path]
) -> None:
    client = medcap.Client(server.url)
    path = query_images[3]
    _same(
        client.search(path, k=3, region="chest"),
        library_index.search(str(path), k=3, where={"region": "chest"})[0],
    )
    hits = client.search(case=ODD_IDS[0], k=4)
    assert ODD_IDS[0] not in [h.image_id for h in hits] and len(hits) == 4


def test_caption_case_thumbnail_and_index(
    server: Server, library_index: Any, query_images: list[Path]
) -> None:
    client = medcap.Client(server.url)
    result = client.caption(query_images[0], k=3)
    [expected] = medcap.caption(library_index, [str(query_images[0])], k=3)
    assert isinstance(result, medcap.CaptionResult)
    assert result.text == expected.text and result.backend == "consensus"
    assert result.prompt.text == expected.prompt.text
    assert [h.image_id for h in result.neighbours] == [h.image_id for h in expected.neighbours]
    case = client.case(ODD_IDS[1])
    assert case.image_id == ODD_IDS[1] and case.caption == library_index.item(ODD_IDS[1]).caption
    assert Image.open(io.BytesIO(client.thumbnail(ODD_IDS[1]))).format == "JPEG"
    assert client.index()["count"] == len(library_index)
    assert client.ready()


def test_refusals_are_one_line_service_errors(server: Server, query_images: list[Path]) -> None:
    client = medcap.Client(server.url)
    cases = [
        (lambda: client.search(query_images[0], k=0), 400, "k must be between"),
        (lambda: client.search(text="  "), 400, "empty"),
        (lambda: client.search(text="x", scanner="GE"), 400, "unknown filter column 'scanner'"),
        (lambda: client.case("no-such-case"), 404, "no case 'no-such-case'"),
        (lambda: client.search(b"not an image"), 400, "cannot decode"),
    ]
    for call, status, words in cases:
        with pytest.raises(ServiceError) as caught:
            call()
        assert caught.value.status == status and words in str(caught.value)
        assert "\n" not in str(caught.value) and str(caught.value).startswith(server.url)
    with pytest.raises(ServiceError, match="one of an image"):
        client.search(query_images[0], case="both")


def test_unreachable_service_is_one_line() -> None:
    from tests.app.served_app import free_port

    client = medcap.Client(f"http://127.0.0.1:{free_port()}", timeout_s=5)
    with pytest.raises(ServiceError) as caught:
        client.search(text="chest")
    assert caught.value.status == 0 and "cannot reach the medcap service" in str(caught.value)
    assert not client.ready()


def test_readme_client_snippet_runs(server: Server, query_images: list[Path]) -> None:
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## HTTP service") :]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None
    code = found.group(1).replace("http://127.0.0.1:8600", server.url)
    code = code.replace('"scan.png"', repr(str(query_images[0])))
    scope: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the project's own README
    assert scope["hits"] and all(h.split == "train" for h in scope["hits"])
    assert isinstance(scope["result"], medcap.CaptionResult)
