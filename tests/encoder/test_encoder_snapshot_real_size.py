"""The BiomedCLIP-shaped snapshot at its real size (ViT-B/16 + BERT-base, ~196M parameters,
random weights, 0.8 GB of fp32 weights on disk) loads offline and embeds on the CPU."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medcap.encoder import load_encoder
from medcap.encoder.checkpoint import fingerprint_state
from tests.support.mirror_repos import (
    BIOMEDBERT_ID,
    biomedclip_config,
    id_folder,
    write_biomedbert,
    write_biomedclip,
)
from tests.support.network import network_refused


@pytest.mark.slow
def test_real_size_biomedclip_snapshot_embeds_images_and_texts_on_cpu(
    tmp_path: Path, mirror_texts: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = tmp_path / "BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
    text_model = write_biomedbert(id_folder(snapshot, BIOMEDBERT_ID), mirror_texts, size="real")
    write_biomedclip(snapshot, text_model, mirror_texts, size="real")
    gc.collect()  # the writer's model is gone before the encoder loads: one copy in memory
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 256, size=(300, 260, 3), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 256, size=(224, 224), dtype=np.uint8)),  # grayscale
        Image.new("RGB", (512, 400), (30, 30, 30)),
    ]
    texts = mirror_texts[:3]
    with network_refused(monkeypatch) as attempts:
        encoder = load_encoder(str(snapshot), device="cpu", precision="fp32")
        image_vectors = encoder.encode_images(images, batch_size=3)
        text_vectors = encoder.encode_texts(texts, batch_size=3)
    assert attempts == []
    parameters = sum(p.numel() for p in encoder.model.parameters())
    assert 190e6 < parameters < 200e6  # ViT-B/16 (86M) + BERT-base (109M) + projections
    assert (
        encoder.model.visual.trunk.embed_dim == 768 and len(encoder.model.visual.trunk.blocks) == 12
    )
    assert encoder.model.text.config.num_hidden_layers == 12 and encoder.context_length >= 256
    assert image_vectors.shape == (3, 512) and text_vectors.shape == (3, 512)
    for vectors in (image_vectors, text_vectors):
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        assert np.isfinite(vectors).all() and not np.allclose(vectors[0], vectors[1])
    del image_vectors, text_vectors
    saved = torch.load(snapshot / "open_clip_pytorch_model.bin", weights_only=True, mmap=True)
    config = {"config": biomedclip_config("real")["model_cfg"]}
    assert encoder.fingerprint == fingerprint_state(config, saved)
