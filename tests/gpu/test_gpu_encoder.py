"""The encoder on CUDA: bf16 against fp32 on the CPU, nvjpeg decoding of every format
against Pillow, the index-build path on the device, pinned worker batches, stream safety."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from medcap.config import DEFAULTS, replace_set
from medcap.data.images import load_image
from medcap.encoder import load_encoder
from medcap.encoder.decode import ImageDecoder, uint8_transform
from medcap.encoder.gpu_decode import decode_batch
from medcap.types import ImageRef, Record
from tests.encoder.images import every_format, smooth

pytestmark = pytest.mark.gpu

# nvjpeg's IDCT and chroma upsampling differ from libjpeg's by a level or a few at edges.
MEAN_PIXEL_DIFF = 1.0
MAX_PIXEL_DIFF = 24
MIN_COSINE_FP32 = 0.999  # nvjpeg-decoded vs Pillow-decoded, both embedded in fp32


def _images(n: int) -> list[Any]:
    from PIL import Image

    return [Image.fromarray(smooth((80 + 8 * (i % 3), 96, 3), 100 + i)) for i in range(n)]


@pytest.mark.parametrize(("model", "min_cosine"), [("medcap-tiny", 0.995), ("ViT-B-16", 0.99)])
def test_bf16_on_cuda_matches_fp32_on_the_cpu(model: str, min_cosine: float) -> None:
    images = _images(6)
    texts = ["Axial CT of the chest showing a nodule.", "MRI of the knee.", "Chest X-ray."]
    gpu = load_encoder(model, device="cuda", precision="bf16")
    cpu = load_encoder(model, device="cpu", precision="fp32")
    assert gpu.fingerprint == cpu.fingerprint  # the same seeded random weights
    for a, b in (
        (gpu.encode_images(images), cpu.encode_images(images)),
        (gpu.encode_texts(texts), cpu.encode_texts(texts)),
    ):
        assert a.dtype == np.float32 and a.shape == b.shape
        assert np.sum(a * b, axis=1).min() > min_cosine


def test_nvjpeg_decodes_every_format_like_pillow(tiny_encoder: Any) -> None:
    blobs = every_format()
    names = list(blobs)
    batch = decode_batch(
        [ImageRef(data=blobs[n]) for n in names], tiny_encoder.geometry, torch.device("cuda")
    )
    assert batch.failures == [] and batch.pixels is not None
    assert batch.pixels.device.type == "cuda" and batch.pixels.dtype == torch.uint8
    transform = uint8_transform(tiny_encoder.preprocess)
    for j, i in enumerate(batch.indices):
        expected = transform(load_image(ImageRef(data=blobs[names[i]])))
        diff = (batch.pixels[j].cpu().int() - expected.int()).abs().float()
        assert diff.mean().item() <= MEAN_PIXEL_DIFF, names[i]
        assert diff.max().item() <= MAX_PIXEL_DIFF, names[i]


def test_nvjpeg_vectors_match_the_pillow_path_with_exif_and_16_bit() -> None:
    encoder = load_encoder("medcap-tiny", device="cuda", precision="fp32")
    blobs = list(every_format().values())
    vectors, failed = encoder.encode_image_bytes(blobs, batch_size=8)
    reference = encoder.encode_images([load_image(ImageRef(data=b)) for b in blobs])
    assert failed == []
    assert np.sum(vectors * reference, axis=1).min() > MIN_COSINE_FP32


def test_side_stream_decoding_is_race_free() -> None:
    """Many batches decoded on the side stream while the model runs give exactly the
    vectors of each image embedded on its own."""
    encoder = load_encoder("medcap-tiny", device="cuda", precision="fp32")
    formats = every_format()
    blobs = [formats[f"jpeg-exif-{1 + i % 8}"] for i in range(8)] + [formats["jpeg-rgb"]] * 4
    many = blobs * 20  # 240 images in batches of 8: 30 batches through the pipeline
    together, failed = encoder.encode_image_bytes(many, batch_size=8)
    alone = np.concatenate([encoder.encode_image_bytes([b], batch_size=1)[0] for b in blobs])
    assert failed == []
    np.testing.assert_allclose(together, np.concatenate([alone] * 20), atol=1e-4)


def test_index_build_path_decodes_on_the_device(tiny_encoder: Any) -> None:
    gpu = load_encoder("medcap-tiny", device="cuda", precision="fp32")
    assert gpu.decodes_on_device
    blobs = every_format()
    records = [
        Record(f"c{i}", ImageRef(path=f"{name}.img", data=blob), f"caption {name}")
        for i, (name, blob) in enumerate(blobs.items())
    ]
    records.insert(2, Record("bad", ImageRef(path="bad.jpg", data=b"\xff\xd8\xff junk"), "x"))
    kept, images, captions, skipped = gpu.encode_cases(records, batch_size=6)
    ref_kept, ref_images, ref_captions, _ = tiny_encoder.encode_cases(records)
    assert [r.image_id for r in kept] == [r.image_id for r in ref_kept]
    assert [s.image_id for s in skipped] == ["bad"]
    assert np.sum(images * ref_images, axis=1).min() > MIN_COSINE_FP32
    assert np.sum(captions * ref_captions, axis=1).min() > 0.9999


def test_worker_batches_arrive_pinned_as_uint8(tiny_encoder: Any) -> None:
    blob = every_format()["png-rgb"]
    records = [Record(f"r{i}", ImageRef(data=blob), "c") for i in range(10)]
    decoder = ImageDecoder(uint8_transform(tiny_encoder.preprocess), num_workers=2, pin_memory=True)
    try:
        batches = list(decoder.batches(records, batch_size=4))
    finally:
        decoder.close()
    assert [len(b.indices) for b in batches] == [4, 4, 2]
    for batch in batches:
        assert batch.pixels is not None and batch.pixels.dtype == torch.uint8
        assert batch.pixels.is_pinned()  # so the non_blocking copy really overlaps


def test_workers_path_on_cuda_matches_the_cpu() -> None:
    cfg = replace_set(DEFAULTS.encoder, image_decode="workers", num_workers=2)
    gpu = load_encoder("medcap-tiny", device="cuda", precision="fp32", cfg=cfg)
    cpu = load_encoder("medcap-tiny", device="cpu", precision="fp32")
    blob = every_format()["jpeg-rgb"]
    records = [Record(f"r{i}", ImageRef(data=blob), f"case {i}") for i in range(9)]
    try:
        _, images, captions, _ = gpu.encode_cases(records, batch_size=4)
    finally:
        gpu.close()
    _, ref_images, ref_captions, _ = cpu.encode_cases(records, batch_size=4)
    assert np.sum(images * ref_images, axis=1).min() > 0.9999
    assert np.sum(captions * ref_captions, axis=1).min() > 0.9999


def test_a_gpu_past_the_last_is_refused_in_one_line() -> None:
    from medcap.errors import InputError

    with pytest.raises(InputError, match="does not exist") as info:
        load_encoder("medcap-tiny", device=f"cuda:{torch.cuda.device_count()}")
    assert "\n" not in str(info.value)
    assert load_encoder("medcap-tiny", device="cuda:0").device == torch.device("cuda:0")
