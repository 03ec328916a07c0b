"""Refining a search: region crops, Rocchio feedback, text steering (pure and on the phantom
index with the trained tiny encoder)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

from medcap.config import current, replace_set, use_config
from medcap.data.images import load_image
from medcap.errors import InputError
from medcap.retrieval.refine import (
    Refinement,
    check_roi,
    crop_roi,
    mix,
    normalise,
    parse_roi,
    rocchio,
)
from medcap.retrieval.retriever import Retriever


def _unit(rng: np.random.Generator, n: int, d: int = 16) -> np.ndarray:
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_parse_roi_and_its_errors() -> None:
    assert parse_roi("10, 20,30,40") == (10, 20, 30, 40)
    for bad in ("10,20,30", "a,b,c,d", "1.5,2,3,4", ""):
        with pytest.raises(InputError, match="x,y,w,h") as info:
            parse_roi(bad)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("roi", "message"),
    [
        ((-1, 0, 10, 10), "outside"),
        ((60, 0, 10, 10), r"outside the image \(64x48 pixels\); keep x\+w <= 64"),
        ((0, 40, 10, 10), "y\\+h <= 48"),
        ((0, 0, 2, 10), "smaller than 4 pixels"),
    ],
)
def test_check_roi_refuses_regions_outside_the_image(roi: Any, message: str) -> None:
    with pytest.raises(InputError, match=message):
        check_roi(roi, 64, 48, min_px=4)


def test_crop_roi_takes_exactly_the_region_pixels() -> None:
    pixels = np.arange(48 * 64, dtype=np.uint32).reshape(48, 64) % 251
    image = Image.fromarray(pixels.astype(np.uint8))
    crop = crop_roi(image, (5, 7, 20, 11))
    assert crop.size == (20, 11)
    assert np.array_equal(np.asarray(crop), pixels[7:18, 5:25].astype(np.uint8))


def test_mix_is_a_unit_blend_with_the_ends_exact() -> None:
    a, b = _unit(np.random.default_rng(0), 2)
    assert np.allclose(mix(a, b, 0.0), a[None], atol=1e-6)
    assert np.allclose(mix(a, b, 1.0), b[None], atol=1e-6)
    half = mix(a, b, 0.5)[0]
    assert np.linalg.norm(half) == pytest.approx(1.0, abs=1e-6)
    assert half @ a == pytest.approx(half @ b, abs=1e-6)  # halfway between


def test_rocchio_moves_toward_relevant_and_away_from_the_others() -> None:
    rng = np.random.default_rng(1)
    q, relevant, other = _unit(rng, 1), _unit(rng, 3), _unit(rng, 2)
    moved = rocchio(q, relevant, other)
    assert np.linalg.norm(moved) == pytest.approx(1.0, abs=1e-6)
    assert float(moved[0] @ relevant.mean(0)) > float(q[0] @ relevant.mean(0))
    assert float(moved[0] @ other.mean(0)) < float(q[0] @ other.mean(0))
    assert np.allclose(rocchio(q, relevant[:0], other[:0]), q, atol=1e-6)  # nothing marked
    with pytest.raises(InputError, match="cancels out"):
        normalise(np.zeros((1, 4), np.float32))


def test_refinement_checks_its_values() -> None:
    assert Refinement().empty and not Refinement(more_like=["a"]).empty
    with pytest.raises(InputError, match="both more-like and less-like"):
        Refinement(more_like=("a",), less_like=("a",))
    with pytest.raises(InputError, match=r"roi-weight must be in \[0, 1\]"):
        Refinement(roi_weight=1.5)
    with pytest.raises(InputError, match="steering text is empty"):
        Refinement(text="  ")


# ---- on the phantom index -------------------------------------------------------------


@pytest.fixture(scope="module")
def query(phantom_dataset: Any) -> tuple[Any, Image.Image]:
    record = next(iter(phantom_dataset.records("test")))
    return record, load_image(record.image)


def _ids(hits: list[Any]) -> list[str]:
    return [h.image_id for h in hits]


@pytest.fixture
def region_vectors() -> Iterator[None]:
    """refine.roi_rerank=0: the region's vector is mixed into the query."""
    root = current()
    use_config(replace_set(root, refine=replace_set(root.refine, roi_rerank=0)))
    try:
        yield
    finally:
        use_config(root)


def test_whole_image_region_vector_equals_the_plain_search(
    phantom_retriever: Retriever, query: tuple[Any, Image.Image], region_vectors: None
) -> None:
    _, image = query
    plain = phantom_retriever.search_images([image], 8, mode="images")[0]
    whole = Refinement(roi=(0, 0, image.width, image.height), roi_weight=1.0)
    assert _ids(phantom_retriever.search_images([image], 8, mode="images", refine=whole)[0]) == (
        _ids(plain)
    )


def test_a_region_vector_searches_the_crop(
    phantom_retriever: Retriever, query: tuple[Any, Image.Image], region_vectors: None
) -> None:
    _, image = query
    box = (image.width // 2, 0, image.width // 2, image.height // 2)
    crop = image.crop((box[0], box[1], box[0] + box[2], box[1] + box[3]))
    by_crop = phantom_retriever.search_images([crop], 8, mode="images")[0]
    by_region = phantom_retriever.search(image, 8, mode="images", roi=box, roi_weight=1.0)[0]
    assert _ids(by_region) == _ids(by_crop)
    assert [h.score for h in by_region] == pytest.approx([h.score for h in by_crop], abs=1e-5)
    mixed = phantom_retriever.search(image, 8, mode="images", roi=box, roi_weight=0.5)[0]
    assert _ids(mixed) not in (_ids(by_crop), [])  # the whole image pulls the mix elsewhere


def test_a_region_rescores_candidates_by_their_own_same_region(
    phantom_retriever: Retriever, query: tuple[Any, Image.Image]
) -> None:
    _, image = query
    box = (image.width // 4, image.height // 4, image.width // 2, image.height // 2)
    weight, n = 0.5, current().refine.roi_rerank
    candidates = phantom_retriever.search_images([image], n, mode="images")[0]
    encoder = phantom_retriever.encoder
    region = encoder.encode_images(
        [image.crop((box[0], box[1], box[0] + box[2], box[1] + box[3]))]
    )[0]
    crops = []
    for hit in candidates:  # phantom cases have no image file: their stored thumbnail
        thumb = Image.open(io.BytesIO(phantom_retriever.index.thumbnail(hit.image_id) or b""))
        w, h = thumb.size
        crops.append(thumb.convert("RGB").crop((w // 4, h // 4, w // 4 + w // 2, h // 4 + h // 2)))
    similar = encoder.encode_images(crops) @ region
    scores = [
        (1 - weight) * c.score + weight * float(s) for c, s in zip(candidates, similar, strict=True)
    ]
    order = sorted(range(n), key=lambda i: (-scores[i], i))[:8]
    got = phantom_retriever.search(image, 8, mode="images", roi=box, roi_weight=weight)[0]
    assert [h.image_id for h in got] == [candidates[i].image_id for i in order]
    assert [h.score for h in got] == pytest.approx([scores[i] for i in order], abs=1e-4)
    assert [h.rank for h in got] == list(range(1, 9))
    assert _ids(got) != _ids(candidates[:8])  # the region changed the order
    with pytest.raises(InputError, match="lies outside the query image"):
        phantom_retriever.search(image, 3, roi=(0, 0, image.width + 1, 8))


def test_feedback_moves_the_query_toward_marked_cases(
    phantom_retriever: Retriever, query: tuple[Any, Image.Image]
) -> None:
    _, image = query
    for mode in ("images", "captions"):
        before = phantom_retriever.search_images([image], 20, mode=mode)[0]
        relevant, other = before[9].image_id, before[1].image_id
        after = phantom_retriever.search_images(
            [image], 20, mode=mode, refine=Refinement(more_like=(relevant,), less_like=(other,))
        )[0]
        rank = {h.image_id: h.rank for h in after}
        assert rank[relevant] < 10  # moved up
        assert rank.get(other, 99) > 2  # moved down (or out)
    with pytest.raises(InputError, match="case 'nope' is not in the index"):
        phantom_retriever.search(image, 3, more_like=["nope"])


def test_feedback_uses_the_space_being_searched(
    phantom_retriever: Retriever, query: tuple[Any, Image.Image]
) -> None:
    _, image = query
    relevant = phantom_retriever.search_images([image], 5, mode="images")[0][4].image_id
    q = phantom_retriever.encoder.encode_images([image])
    refine = Refinement(more_like=(relevant,))
    for mode in ("images", "captions"):
        stored = phantom_retriever.stored_vectors([relevant], mode)
        expected = rocchio(q, stored, stored[:0])
        got = phantom_retriever.refine_vectors(q, refine, mode=mode, images=[image])
        assert np.allclose(got, expected, atol=1e-6)


def test_text_steering_weights_run_from_image_to_text(
    phantom_retriever: Retriever, query: tuple[Any, Image.Image]
) -> None:
    _, image = query
    words = "Axial CT of the chest showing a nodule"
    image_only = phantom_retriever.search_images([image], 8, mode="images")[0]
    text_only = phantom_retriever.search_texts([words], 8, mode="images")[0]
    at = {
        w: _ids(phantom_retriever.search(image, 8, mode="images", text=words, text_weight=w)[0])
        for w in (0.0, 1.0)
    }
    assert at[0.0] == _ids(image_only) and at[1.0] == _ids(text_only)
    with pytest.raises(InputError, match="refines image queries only"):
        phantom_retriever.search(text="CT of the chest", roi=(0, 0, 8, 8))
