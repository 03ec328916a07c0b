"""Embedding images, texts and cases: shapes, normalisation, modes, skipped images."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from medcap.config import DEFAULTS, replace_set
from medcap.encoder import load_encoder
from medcap.types import ImageRef, Record


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    gray = Image.fromarray(rng.integers(0, 255, (70, 90), dtype=np.uint8), mode="L")
    sixteen = Image.fromarray(rng.integers(0, 4000, (64, 64), dtype=np.uint16))
    rgba = Image.fromarray(rng.integers(0, 255, (50, 50, 4), dtype=np.uint8), mode="RGBA")
    rgb = Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8), mode="RGB")
    return [gray, sixteen, rgba, rgb]


def _records() -> list[Record]:
    images = _images()
    records = [
        Record(f"case{i}", ImageRef(path=f"case{i}.png", data=_png(im)), f"caption number {i}")
        for i, im in enumerate(images)
    ]
    corrupt = Record("broken", ImageRef(path="broken.png", data=b"\x89PNG not really"), "lost")
    return [*records[:2], corrupt, *records[2:]]


def test_encode_images_any_mode_unit_norm(tiny_encoder: Any) -> None:
    vectors = tiny_encoder.encode_images(_images())
    assert vectors.shape == (4, tiny_encoder.embed_dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert len({v.tobytes() for v in vectors}) == 4  # different images, different vectors


def test_encode_texts_batches_do_not_change_vectors(tiny_encoder: Any) -> None:
    texts = [f"axial CT slice {i} showing a nodule" for i in range(7)]
    together = tiny_encoder.encode_texts(texts)
    in_threes = tiny_encoder.encode_texts(texts, batch_size=3)
    np.testing.assert_allclose(together, in_threes, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert tiny_encoder.encode_texts([]).shape == (0, tiny_encoder.embed_dim)


def test_encode_cases_skips_undecodable_keeps_grayscale(tiny_encoder: Any) -> None:
    records = _records()
    kept, images, captions, skipped = tiny_encoder.encode_cases(records, batch_size=2)
    assert [r.image_id for r in kept] == ["case0", "case1", "case2", "case3"]
    assert images.shape == captions.shape == (4, tiny_encoder.embed_dim)
    assert [(s.image_id, s.source) for s in skipped] == [("broken", "broken.png")]
    assert skipped[0].reason
    # Row i belongs to kept[i]: the same image embedded alone gives the same vector.
    alone = tiny_encoder.encode_images([_images()[0]])
    np.testing.assert_allclose(images[0], alone[0], atol=1e-5)
    np.testing.assert_allclose(
        captions[3], tiny_encoder.encode_texts(["caption number 3"])[0], atol=1e-5
    )


def test_encode_cases_with_decoding_workers_matches(tiny_encoder: Any) -> None:
    records = _records()
    workers = load_encoder(
        "medcap-tiny", device="cpu", cfg=replace_set(DEFAULTS.encoder, num_workers=2)
    )
    assert workers.fingerprint == tiny_encoder.fingerprint
    kept, images, _, skipped = workers.encode_cases(records, batch_size=2)
    ref_kept, ref_images, _, _ = tiny_encoder.encode_cases(records, batch_size=3)
    assert [r.image_id for r in kept] == [r.image_id for r in ref_kept]
    np.testing.assert_allclose(images, ref_images, atol=1e-5)
    assert len(skipped) == 1


def test_fingerprint_tracks_weights(tiny_encoder: Any) -> None:
    import torch

    other = load_encoder("medcap-tiny", device="cpu")
    assert other.fingerprint == tiny_encoder.fingerprint
    changed = load_encoder("medcap-tiny", device="cpu")
    with torch.no_grad():
        changed.model.logit_scale.add_(1e-3)
    assert changed.fingerprint != tiny_encoder.fingerprint


def test_context_length_and_precision_choice(tiny_encoder: Any) -> None:
    assert tiny_encoder.context_length == 32
    assert tiny_encoder.tokenize(["word " * 100]).shape == (1, 32)
    assert tiny_encoder.autocast_dtype is None  # fp32 on CPU under "auto"
    bf16 = load_encoder("medcap-tiny", device="cpu", precision="bf16")
    vectors = bf16.encode_texts(["CT of the chest"])
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("device", ["cuda:7", "tpu"])
def test_bad_device_is_an_input_error(device: str) -> None:
    from medcap.errors import InputError

    with pytest.raises(InputError, match="device"):
        load_encoder("medcap-tiny", device=device)
