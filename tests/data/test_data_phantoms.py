"""Phantoms: splits, ground truth, captions, determinism, and what is drawn where."""

from __future__ import annotations

import dataclasses
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medcap.data import build_phantoms, iter_phantom_records, load_image, open_dataset
from medcap.data.dataset import Dataset
from medcap.data.phantoms import split_counts
from medcap.data.phantoms.render import render_case
from medcap.data.phantoms.spec import MODALITIES, MODALITY_CUI, PhantomCase
from tests.fixtures_data import PHANTOM_N, PHANTOM_SIZE


def test_split_counts_add_up_and_follow_fractions() -> None:
    for n in (0, 1, 7, 200, 2001):
        counts = split_counts(n, (0.8, 0.1, 0.1))
        assert sum(counts.values()) == n
        assert abs(counts["train"] - 0.8 * n) <= 1
    assert split_counts(10, (1.0, 0.0, 0.0)) == {"train": 10, "valid": 0, "test": 0}


def test_phantom_dataset_reads_back_with_ground_truth(phantom_dataset: Dataset) -> None:
    assert phantom_dataset.splits() == ["train", "valid", "test"]
    counts = {s: phantom_dataset.count(s) for s in phantom_dataset.splits()}
    assert counts == split_counts(PHANTOM_N)
    records = [r for s in phantom_dataset.splits() for r in phantom_dataset.records(s)]
    assert len({r.image_id for r in records}) == PHANTOM_N
    assert phantom_dataset.skipped == []
    seen_modalities = set()
    for record in records:
        extra = record.extra
        seen_modalities.add(extra["modality"])
        assert record.cuis[0] == MODALITY_CUI[extra["modality"]]
        assert record.caption.endswith(".") and len(record.caption.split()) >= 4
        if extra["finding"] == "none":
            assert extra["location"] == "none" and extra["size_cm"] is None
        else:
            assert extra["location"] == f"{extra['side']} {extra['level']}"
            assert extra["side"] in record.caption
        if extra["size_cm"] is not None:
            size = f"{extra['size_cm']:.1f}".rstrip("0").rstrip(".")
            assert f"{size} cm" in record.caption
        assert bool(re.search(r"\barrow\b", record.caption)) == bool(extra["has_arrow"])
    assert seen_modalities == set(MODALITIES)


def test_phantom_images_decode_at_requested_size_in_gray_and_colour(
    phantom_dataset: Dataset,
) -> None:
    modes = set()
    for record in phantom_dataset.records("train"):
        assert record.image.data is not None
        with Image.open(io.BytesIO(record.image.data)) as raw:
            modes.add(raw.mode)
            assert raw.size == (PHANTOM_SIZE, PHANTOM_SIZE)
        assert load_image(record.image).mode == "RGB"
    assert {"L", "RGB"} <= modes


def test_same_seed_gives_byte_identical_files_and_other_seed_differs(tmp_path: Path) -> None:
    a = build_phantoms(tmp_path / "a", n=30, seed=5, image_size=48)
    b = build_phantoms(tmp_path / "b", n=30, seed=5, image_size=48)
    c = build_phantoms(tmp_path / "c", n=30, seed=6, image_size=48)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert any(str(p).endswith(".parquet") for p in files_a)
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert (a / "data" / "train-00000-of-00001.parquet").read_bytes() != (
        c / "data" / "train-00000-of-00001.parquet"
    ).read_bytes()
    fingerprint = open_dataset(a).fingerprint()
    assert fingerprint == open_dataset(b).fingerprint() != open_dataset(c).fingerprint()


def test_rebuild_replaces_old_shards_and_larger_sets_extend_smaller(tmp_path: Path) -> None:
    out = build_phantoms(tmp_path / "p", n=40, seed=1, image_size=48)
    build_phantoms(out, n=10, seed=1, image_size=48, overwrite=True)
    ds = open_dataset(out)
    assert sum(ds.count(s) for s in ds.splits()) == 10
    small = {r.image_id: r for r in iter_phantom_records(10, seed=1, image_size=48)}
    large = {r.image_id: r for r in iter_phantom_records(20, seed=1, image_size=48)}
    shared = set(small) & set(large)
    assert shared  # the train blocks overlap: case i depends only on (seed, i)
    for image_id in shared:
        assert small[image_id].image.data == large[image_id].image.data
        assert small[image_id].caption == large[image_id].caption


def _case(**changes: object) -> PhantomCase:
    base = PhantomCase(
        modality="CT",
        region="chest",
        finding="mass",
        side="right",
        level="upper",
        size_cm=5.0,
        severity=None,
        has_arrow=False,
        view="axial",
        sequence=None,
        contrast=False,
        color=False,
        image_format="PNG",
    )
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize(
    "modality,region,view",
    [
        ("CT", "chest", "axial"),
        ("MRI", "head", "axial"),
        ("X-ray", "chest", "frontal"),
        ("PET", "abdomen", "coronal"),
    ],
)
def test_finding_is_drawn_on_the_image_side_of_the_radiological_convention(
    modality: str, region: str, view: str
) -> None:
    extra = {"sequence": "T2"} if modality == "MRI" else {}
    size = 96

    def render(case: PhantomCase) -> np.ndarray:
        return np.asarray(render_case(case, size, np.random.default_rng(3)), dtype=np.float32)

    normal = render(
        _case(
            modality=modality,
            region=region,
            view=view,
            finding="none",
            side=None,
            level=None,
            size_cm=None,
            **extra,
        )
    )
    half = size // 2
    for side, level in (("right", "upper"), ("left", "lower")):
        with_mass = render(
            _case(modality=modality, region=region, view=view, side=side, level=level, **extra)
        )
        diff = np.abs(with_mass - normal)
        rows = slice(0, half) if level == "upper" else slice(half, size)
        cols = (
            slice(0, half) if side == "right" else slice(half, size)
        )  # patient's right = image left
        quadrants = [
            diff[r, c].mean()
            for r in (slice(0, half), slice(half, size))
            for c in (slice(0, half), slice(half, size))
        ]
        # noise and MRI bias fields differ between the two renders; the finding dominates
        assert diff[rows, cols].mean() == max(quadrants)
        assert diff[rows, cols].mean() > 1.5 * sorted(quadrants)[-2] + 2.0


def test_modalities_look_different() -> None:
    size = 64
    means = {}
    for modality, region, view in [
        ("CT", "chest", "axial"),
        ("X-ray", "chest", "frontal"),
        ("ultrasound", "chest", "sector"),
        ("angiography", "chest", "frontal"),
        ("PET", "chest", "axial"),
        ("MRI", "chest", "axial"),
    ]:
        case = _case(
            modality=modality,
            region=region,
            view=view,
            finding="none",
            side=None,
            level=None,
            size_cm=None,
            sequence="T2" if modality == "MRI" else None,
        )
        means[modality] = np.asarray(
            render_case(case, size, np.random.default_rng(0)), dtype=np.float32
        )
    names = list(means)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert np.abs(means[a] - means[b]).mean() > 10.0, (a, b)
