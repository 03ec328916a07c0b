"""`POST /v1/search` on a real server: answers equal `medcap.open_index(...).search(...)`."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest

from medcap.types import Hit
from tests.serve.served import Server

TOL = 1e-5


def assert_same_hits(answer: dict[str, Any], expected: list[Hit]) -> None:
    """The service's hits are the library's: same ids in the same order, same scores."""
    hits = answer["hits"]
    assert [h["image_id"] for h in hits] == [h.image_id for h in expected]
    assert [h["rank"] for h in hits] == list(range(1, len(expected) + 1))
    for got, want in zip(hits, expected, strict=True):
        assert abs(got["score"] - want.score) <= TOL
        assert got["caption"] == want.caption and got["cuis"] == list(want.cuis)
        assert got["split"] == want.split and got["metadata"] == dict(want.metadata)
        assert got["thumbnail_url"] == f"/v1/cases/{quote(want.image_id, safe='')}/thumbnail"


@pytest.mark.parametrize(("query", "options"), [
    ("", {}),
    ("?k=7&mode=images", {"k": 7, "mode": "images"}),
    ("?k=4&modality=CT&modality=MRI", {"k": 4, "where": {"modality": ["CT", "MRI"]}}),
    ("?where=" + quote(json.dumps({"split": "train", "region": ["chest"]})),
     {"where": {"split": "train", "region": ["chest"]}}),
])  # fmt: skip
def test_image_search_equals_the_library(
    server: Server,
    library_index: Any,
    query_images: list[Path],
    query: str,
    options: dict[str, Any],
) -> None:
    for path in query_images[:3]:
        reply = server.search_image(path.read_bytes(), query)
        assert reply.status == 200, reply.body
        answer = reply.json()
        assert answer["query"] == {"kind": "image", "width": 64, "height": 64}
        assert answer["mode"] == options.get("mode", "captions") and answer["took_ms"] > 0
        assert_same_hits(answer, library_index.search(str(path), **options)[0])


@pytest.mark.parametrize("payload", [
    {"text": "axial CT of the chest showing a nodule"},
    {"text": "MRI of the brain", "k": 3, "mode": "captions"},
    {"text": "ultrasound", "where": {"modality": "ultrasound"}, "k": 6},
])  # fmt: skip
def test_text_search_equals_the_library(
    server: Server, library_index: Any, payload: dict[str, Any]
) -> None:
    reply = server.post_json("/v1/search", payload)
    assert reply.status == 200, reply.body
    answer = reply.json()
    assert answer["query"] == {"kind": "text", "text": payload["text"]}
    options = {key: value for key, value in payload.items() if key != "text"}
    expected = library_index.search(text=payload["text"], **options)[0]
    assert answer["mode"] == options.get("mode", "images")
    assert_same_hits(answer, expected)


def test_filters_as_query_parameters_of_a_text_search(server: Server, library_index: Any) -> None:
    reply = server.post_json("/v1/search?modality=MRI&k=4", {"text": "a cyst"})
    assert reply.status == 200, reply.body
    expected = library_index.search(text="a cyst", k=4, where={"modality": "MRI"})[0]
    assert_same_hits(reply.json(), expected)
    assert {h["metadata"]["modality"] for h in reply.json()["hits"]} == {"MRI"}


def test_case_neighbours_exclude_the_case(server: Server, library_index: Any) -> None:
    own = library_index.index.image_ids()[5]
    reply = server.post_json("/v1/search", {"case": own, "k": 5})
    assert reply.status == 200, reply.body
    answer = reply.json()
    assert answer["query"] == {"kind": "case", "image_id": own} and answer["mode"] == "images"
    ids = [h["image_id"] for h in answer["hits"]]
    assert own not in ids and len(ids) == 5
    row = library_index.index.row_of(own)
    vector = library_index.index.vectors(np.array([row]), "images")
    expected = library_index.index.search(vector, 5, target="images", exclude_ids=[own])[0]
    assert_same_hits(answer, expected)


def test_an_indexed_image_finds_itself_first(server: Server, phantom_dataset: Any) -> None:
    from medcap.data.images import load_image

    record = next(iter(phantom_dataset.records("train")))
    buffer = io.BytesIO()
    load_image(record.image).save(buffer, format="PNG")
    reply = server.search_image(buffer.getvalue(), "?mode=images&k=3")
    assert reply.status == 200
    top = reply.json()["hits"][0]
    assert top["image_id"] == record.image_id and top["score"] > 0.99


def test_jpeg_upload_is_searched(
    server: Server, library_index: Any, query_images: list[Path], tmp_path: Path
) -> None:
    from PIL import Image

    jpeg = tmp_path / "query.jpg"
    Image.open(query_images[4]).save(jpeg, format="JPEG", quality=90)
    reply = server.search_image(jpeg.read_bytes(), "?k=4&mode=images")
    assert reply.status == 200, reply.body
    assert_same_hits(reply.json(), library_index.search(str(jpeg), k=4, mode="images")[0])


def test_dicom_upload_is_searched(server: Server, library_index: Any) -> None:
    from pydicom.data import get_testdata_file

    dicom = Path(get_testdata_file("CT_small.dcm"))
    reply = server.search_image(dicom.read_bytes(), "?k=3")
    assert reply.status == 200, reply.body
    assert_same_hits(reply.json(), library_index.search(str(dicom), k=3)[0])
