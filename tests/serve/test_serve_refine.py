"""Refined searches through `medcap serve` and `medcap.Client`: region, steering text,
feedback and number ranges answer what the library answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import medcap
from medcap.errors import ServiceError
from tests.serve.served import Server
from tests.serve.test_serve_client import _same


def test_region_steering_and_feedback_equal_the_library(
    server: Server, library_index: Any, query_images: list[Path]
) -> None:
    client = medcap.Client(server.url)
    path = query_images[1]
    width, height = Image.open(path).size
    box = (0, height // 4, width // 2, height // 2)
    _same(
        client.search(path, k=5, mode="images", roi=box, roi_weight=0.8),
        library_index.search(str(path), k=5, mode="images", roi=box, roi_weight=0.8)[0],
    )
    _same(
        client.search(path, k=5, text="with a fracture", text_weight=0.4),
        library_index.search(str(path), k=5, text="with a fracture", text_weight=0.4)[0],
    )
    plain = library_index.search(str(path), k=8, mode="images")[0]
    more, less = [plain[6].image_id, plain[7].image_id], [plain[0].image_id]
    fed = client.search(path, k=8, mode="images", more_like=more, less_like=less)
    _same(
        fed, library_index.search(str(path), k=8, mode="images", more_like=more, less_like=less)[0]
    )
    assert [h.image_id for h in fed] != [h.image_id for h in plain]
    _same(
        client.search(text="MRI of the knee", k=4, more_like=more),
        library_index.search(text="MRI of the knee", k=4, more_like=more)[0],
    )


def test_a_case_steered_by_text_and_its_answer_says_how(server: Server, library_index: Any) -> None:
    from medcap.retrieval.refine import mix

    case = library_index.index.image_ids()[3]
    answer = server.post_json(
        "/v1/search", {"case": case, "text": "with a cyst", "text_weight": 0.5, "k": 4}
    ).json()
    assert answer["query"]["refine"] == {"text": "with a cyst", "text_weight": 0.5}
    row = library_index.index.row_of(case)
    vector = mix(
        library_index.index.vectors(np.array([row]), "images"),
        library_index.encoder.encode_texts(["with a cyst"]),
        0.5,
    )
    expected = library_index.index.search(vector, 4, target="images", exclude_ids=[case])[0]
    assert [h["image_id"] for h in answer["hits"]] == [h.image_id for h in expected]


def test_ranges_and_refinement_mistakes(server: Server, query_images: list[Path]) -> None:
    client = medcap.Client(server.url)
    hits = client.search(text="CT of the chest", k=6, size_cm="1..2")
    assert hits and all(1 <= h.metadata["size_cm"] <= 2 for h in hits)
    width, _ = Image.open(query_images[0]).size
    cases = [
        (lambda: client.search(query_images[0], roi=(0, 0, width + 1, 8)), "lies outside"),
        (lambda: client.search(text="CT", more_like=["no-such-case"]), "not in the index"),
        (lambda: client.search(text="CT", roi=(0, 0, 8, 8)), "refines image queries"),
        (lambda: client.search(query_images[0], text_weight=2), "text-weight must be in"),
        (lambda: client.search(text="CT", modality="1..2"), "not numbers"),
    ]
    for call, words in cases:
        with pytest.raises(ServiceError) as caught:
            call()
        assert caught.value.status == 400 and words in str(caught.value), str(caught.value)
