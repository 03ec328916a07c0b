"""The cached traced image tower: same pixels, same vectors, same hits, less start-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from medcap.data.images import load_image
from medcap.encoder.image_tower import (
    ImageTowerEncoder,
    load_image_tower,
    preprocess,
    save_image_tower,
    supported_preprocess,
    tower_paths,
)
from medcap.retrieval.retriever import open_retriever

SIZES = [(64, 64), (300, 200), (65, 97), (1000, 17), (17, 1000), (63, 64), (640, 480)]
MODES = ["RGB", "L", "RGBA", "I;16", "P"]


def _image(size: tuple[int, int], mode: str, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65535, (size[1], size[0]), dtype=np.uint16))
    return rgb if mode == "RGB" else rgb.convert(mode)


@pytest.mark.parametrize("resize_mode", ["shortest", "squash"])
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_preprocess_reproduces_open_clip(resize_mode: str, interpolation: str) -> None:
    from open_clip.transform import PreprocessCfg, image_transform_v2

    cfg = {
        "size": 64, "mode": "RGB", "mean": (0.48145466, 0.4578275, 0.40821073),
        "std": (0.26862954, 0.26130258, 0.27577711), "interpolation": interpolation,
        "resize_mode": resize_mode, "fill_color": 0,
    }  # fmt: skip
    assert supported_preprocess(cfg)
    reference = image_transform_v2(PreprocessCfg(**cfg), is_train=False)
    for i, (size, mode) in enumerate((s, m) for s in SIZES for m in MODES):
        image = _image(size, mode, i)
        expected = reference(image.convert("RGB")).numpy()
        np.testing.assert_array_equal(preprocess(image, cfg), expected, err_msg=f"{size} {mode}")


def test_unsupported_preprocessing_is_declined() -> None:
    assert not supported_preprocess({"size": 64, "resize_mode": "longest"})
    assert not supported_preprocess({"size": [64, 96], "resize_mode": "shortest"})
    assert not supported_preprocess({"size": 64, "interpolation": "nearest"})


def test_tower_gives_the_encoder_vectors(trained_encoder: Any, phantom_dataset: Any) -> None:
    path = save_image_tower(trained_encoder)
    assert path is not None and path == tower_paths(trained_encoder.fingerprint)[0]
    assert save_image_tower(trained_encoder) == path  # cached: not traced again

    def no_full_encoder() -> Any:
        raise AssertionError("image queries must not load the full encoder")

    tower = load_image_tower(trained_encoder.fingerprint, no_full_encoder)
    assert isinstance(tower, ImageTowerEncoder)
    images = [load_image(r.image) for r in list(phantom_dataset.records("test"))[:6]]
    images.append(_image((300, 200), "L", 9))
    np.testing.assert_allclose(
        tower.encode_images(images, batch_size=4), trained_encoder.encode_images(images), atol=1e-5
    )
    assert tower.fingerprint == trained_encoder.fingerprint and tower.embed_dim == 64


def test_damaged_or_foreign_cache_entries_are_ignored(
    trained_encoder: Any, caplog: pytest.LogCaptureFixture
) -> None:
    assert load_image_tower("0" * 64, lambda: trained_encoder) is None  # nothing cached
    pt_path, _ = tower_paths(trained_encoder.fingerprint)
    save_image_tower(trained_encoder)
    good = pt_path.read_bytes()
    try:
        pt_path.write_bytes(good[: len(good) // 2])
        assert load_image_tower(trained_encoder.fingerprint, lambda: trained_encoder) is None
        assert "ignoring the cached image tower" in caplog.text
    finally:
        pt_path.write_bytes(good)


def test_retriever_with_the_tower_matches_the_full_encoder(
    phantom_index_dir: Path, phantom_retriever: Any, phantom_dataset: Any
) -> None:
    fast = open_retriever(phantom_index_dir, device="cpu", image_tower=True)
    assert isinstance(fast.encoder, ImageTowerEncoder)
    images = [load_image(r.image) for r in list(phantom_dataset.records("test"))[:5]]
    for mode in ("captions", "images"):
        got = fast.search_images(images, 5, mode=mode)  # type: ignore[arg-type]
        want = phantom_retriever.search_images(images, 5, mode=mode)
        assert [[h.image_id for h in hits] for hits in got] == [
            [h.image_id for h in hits] for hits in want
        ]
    texts = ["CT of the chest", "MRI of the brain"]
    got_text = fast.search_texts(texts, 3)  # loads the full encoder on demand
    assert [[h.image_id for h in hits] for hits in got_text] == [
        [h.image_id for h in hits] for hits in phantom_retriever.search_texts(texts, 3)
    ]


def test_search_from_a_fresh_process_does_not_import_open_clip(
    phantom_index_dir: Path, phantom_dataset: Any, tmp_path: Path, trained_encoder: Any
) -> None:
    save_image_tower(trained_encoder)
    record = next(iter(phantom_dataset.records("test")))
    query = tmp_path / "q.png"
    query.write_bytes(record.image.data)
    script = (
        "import sys\n"
        "from medcap.cli import main\n"
        f"code = main(['search', {str(query)!r}, '--index', {str(phantom_index_dir)!r},"
        " '--json'])\n"
        "print('open_clip loaded:', 'open_clip' in sys.modules, 'exit:', code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert "open_clip loaded: False exit: 0" in done.stdout, done.stderr[-2000:]
    assert '"image_id"' in done.stdout
