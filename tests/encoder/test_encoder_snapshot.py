"""Local open_clip snapshots as encoder specs: BiomedCLIP-shaped folders (mirrored from the
real repository, shrunk) and medcap-tiny ones; same weights give the same vectors and
fingerprint whichever way they are named; incomplete or damaged folders fail in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medcap.encoder import load_encoder, parse_spec
from medcap.encoder.checkpoint import fingerprint_state
from medcap.encoder.hf_text import TEXT_MODEL_ENV
from medcap.errors import CorruptArtifactError, InputError, MedcapError, OfflineFetchError
from medcap.snapshots.bundle import BUNDLE_ENV
from tests.support.mirror_bundle import write_bundle
from tests.support.mirror_repos import (
    BIOMEDBERT_ID,
    BIOMEDCLIP_ID,
    OPENAI_MEAN,
    OPENAI_STD,
    id_folder,
    write_clip_snapshot,
)

WEIGHTS = "open_clip_pytorch_model.bin"
TEXTS = ["Axial CT of the chest showing a 2 cm nodule.", "MRI of the brain."]


def _images(n: int = 3) -> list[Image.Image]:
    rng = np.random.default_rng(7)
    return [
        Image.fromarray(rng.integers(0, 256, size=(96 + 16 * i, 120, 3), dtype=np.uint8))
        for i in range(n)
    ]


@pytest.fixture(autouse=True)
def _no_bundle_or_text_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub.constants

    monkeypatch.delenv(BUNDLE_ENV, raising=False)
    monkeypatch.delenv(TEXT_MODEL_ENV, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def _tiny_trained_weights() -> torch.nn.Module:
    """medcap-tiny with weights moved away from its seeded init (so they are not the spec's)."""
    model = load_encoder("medcap-tiny").model
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.01 * torch.randn(param.shape, generator=generator))
    return model


def test_biomedclip_snapshot_loads_weights_preprocessing_and_text_tower(
    biomedclip_snapshot: Path, no_network: list[str]
) -> None:
    spec = parse_spec(str(biomedclip_snapshot))
    assert spec.kind == "snapshot" and spec.path == biomedclip_snapshot / WEIGHTS
    encoder = load_encoder(str(biomedclip_snapshot), device="cpu")
    saved = torch.load(biomedclip_snapshot / WEIGHTS, weights_only=True)
    state = encoder.model.state_dict()
    assert set(state) == set(saved)
    assert all(torch.equal(state[k], saved[k]) for k in saved)
    config = json.loads((biomedclip_snapshot / "open_clip_config.json").read_text())
    assert encoder.fingerprint == fingerprint_state({"config": config["model_cfg"]}, saved)
    # the architecture keeps the hub id: fingerprints do not depend on where folders are
    assert encoder.architecture["config"]["text_cfg"]["hf_model_name"] == BIOMEDBERT_ID
    assert encoder.preprocess_cfg["mean"] == OPENAI_MEAN
    assert encoder.preprocess_cfg["std"] == OPENAI_STD
    assert tuple(encoder.preprocess_cfg["size"]) == (224, 224)
    text_tower = encoder.model.text
    assert text_tower.config.model_type == "bert" and text_tower.config.hidden_size == 32
    tokens = encoder.tokenize(TEXTS)
    vocab = (biomedclip_snapshot / "vocab.txt").read_text().split("\n")
    assert tokens.shape == (2, 256)  # BiomedCLIP's context length
    assert int(tokens[0, 0]) == vocab.index("[CLS]") and int(tokens[1, -1]) == vocab.index("[PAD]")
    images, texts = encoder.encode_images(_images()), encoder.encode_texts(TEXTS)
    assert images.shape == (3, 64) and texts.shape == (2, 64)
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(texts[0], texts[1])
    assert encoder.spec == str(biomedclip_snapshot.resolve())


def test_the_weights_file_or_config_of_a_snapshot_names_the_snapshot(
    biomedclip_snapshot: Path, no_network: list[str]
) -> None:
    by_folder = load_encoder(str(biomedclip_snapshot))
    by_weights = load_encoder(str(biomedclip_snapshot / WEIGHTS))
    assert parse_spec(str(biomedclip_snapshot / "open_clip_config.json")).kind == "snapshot"
    assert by_weights.fingerprint == by_folder.fingerprint
    np.testing.assert_array_equal(by_weights.encode_texts(TEXTS), by_folder.encode_texts(TEXTS))


def test_snapshot_name_with_weights_and_bundle_give_the_same_vectors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: list[str]
) -> None:
    snapshot = write_clip_snapshot(
        tmp_path / "tiny-snapshot", _tiny_trained_weights(), "medcap-tiny"
    )
    bundle = write_bundle(tmp_path / "bundle", [("model", "medcap/tiny-clip", "encoder", snapshot)])
    monkeypatch.setenv(BUNDLE_ENV, str(bundle))
    specs = [str(snapshot), f"medcap-tiny:{snapshot / WEIGHTS}", "hf-hub:medcap/tiny-clip"]
    encoders = [load_encoder(spec, device="cpu") for spec in specs]
    assert parse_spec(specs[2]).kind == "snapshot"
    assert encoders[2].spec == "hf-hub:medcap/tiny-clip"  # recorded by id, valid on any machine
    assert len({e.fingerprint for e in encoders}) == 1
    assert encoders[0].fingerprint != load_encoder("medcap-tiny").fingerprint
    images = _images()
    reference = encoders[0].encode_images(images), encoders[0].encode_texts(TEXTS)
    for encoder in encoders[1:]:
        np.testing.assert_array_equal(encoder.encode_images(images), reference[0])
        np.testing.assert_array_equal(encoder.encode_texts(TEXTS), reference[1])


@pytest.mark.slow
def test_biomedclip_from_a_bundle_equals_the_snapshot_folder(
    biomedclip_snapshot: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_network: list[str],
) -> None:
    # As fetched: BiomedCLIP's repository and, beside it, the text model repository it names.
    bare = Path(shutil.copytree(biomedclip_snapshot, tmp_path / "bare"))
    shutil.rmtree(id_folder(bare, BIOMEDBERT_ID))
    text_model = id_folder(biomedclip_snapshot, BIOMEDBERT_ID)
    bundle = write_bundle(
        tmp_path / "bundle",
        [
            ("model", BIOMEDCLIP_ID, "encoder", bare),
            ("model", BIOMEDBERT_ID, "text-model", text_model),
        ],
    )
    folder = load_encoder(str(biomedclip_snapshot))
    monkeypatch.setenv(BUNDLE_ENV, str(bundle))
    bundled = load_encoder(f"hf-hub:{BIOMEDCLIP_ID}")
    assert bundled.fingerprint == folder.fingerprint
    images = _images(2)
    np.testing.assert_array_equal(bundled.encode_images(images), folder.encode_images(images))
    np.testing.assert_array_equal(bundled.encode_texts(TEXTS), folder.encode_texts(TEXTS))


def test_preprocessing_comes_from_the_snapshot_config(tmp_path: Path) -> None:
    from torchvision.transforms import functional as tf

    custom = {
        "mean": [0.5, 0.4, 0.3],
        "std": [0.2, 0.25, 0.3],
        "interpolation": "bilinear",
        "resize_mode": "squash",
    }
    model = _tiny_trained_weights()
    plain = load_encoder(str(write_clip_snapshot(tmp_path / "plain", model, "medcap-tiny")))
    encoder = load_encoder(
        str(write_clip_snapshot(tmp_path / "custom", model, "medcap-tiny", custom))
    )
    assert {k: encoder.preprocess_cfg[k] for k in custom} == custom
    image = _images(3)[2]  # 128 x 120: squash and shortest-side resizing differ
    resized = tf.resize(image, [64, 64], interpolation=tf.InterpolationMode.BILINEAR)
    expected = tf.normalize(tf.to_tensor(resized), custom["mean"], custom["std"])
    torch.testing.assert_close(encoder.preprocess(image), expected, atol=1e-5, rtol=0)
    assert not np.allclose(encoder.encode_images([image]), plain.encode_images([image]))


@pytest.mark.slow
def test_text_model_from_the_environment_or_one_line_naming_where_it_was_looked_for(
    snapshot_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: list[str]
) -> None:
    inner = id_folder(snapshot_copy, BIOMEDBERT_ID)
    elsewhere = tmp_path / "models" / "BiomedBERT"
    shutil.move(inner, elsewhere)
    with pytest.raises(OfflineFetchError) as err:
        load_encoder(str(snapshot_copy))
    message = str(err.value)
    assert "\n" not in message and repr(BIOMEDBERT_ID) in message
    assert str(inner) in message and f"{TEXT_MODEL_ENV} (unset)" in message
    assert "no bundle" in message and "Hugging Face cache" in message
    monkeypatch.setenv(TEXT_MODEL_ENV, str(elsewhere))  # the model's own folder
    assert load_encoder(str(snapshot_copy)).encode_texts(TEXTS).shape == (2, 64)
    shutil.move(elsewhere, id_folder(tmp_path / "models", BIOMEDBERT_ID))
    monkeypatch.setenv(TEXT_MODEL_ENV, str(tmp_path / "models"))  # a folder of id folders
    assert load_encoder(str(snapshot_copy)).encode_texts(TEXTS).shape == (2, 64)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _edit_json(path: Path, edit: dict[str, object], *keys: str) -> None:
    data = json.loads(path.read_text())
    target = data
    for key in keys:
        target = target[key]
    target.update(edit)
    path.write_text(json.dumps(data))


def _to_safetensors(folder: Path) -> Path:
    from safetensors.torch import save_file

    state = torch.load(folder / WEIGHTS, weights_only=True)
    save_file(state, folder / "open_clip_model.safetensors")
    (folder / WEIGHTS).unlink()
    return folder / "open_clip_model.safetensors"


def _damage(folder: Path, kind: str) -> tuple[type[MedcapError], str]:
    """Damage a snapshot copy; returns the error expected and a text its message names."""
    if kind == "truncated-bin":
        _truncate(folder / WEIGHTS)
        return CorruptArtifactError, str(folder / WEIGHTS)
    if kind == "truncated-safetensors":
        weights = _to_safetensors(folder)
        _truncate(weights)
        return CorruptArtifactError, f"{weights}: truncated"
    if kind == "missing-vocab":
        (folder / "vocab.txt").unlink()
        (folder / "tokenizer.json").unlink()
        return InputError, f"{folder / 'vocab.txt'} is missing"
    if kind == "unknown-vision-architecture":
        config = folder / "open_clip_config.json"
        _edit_json(config, {"timm_model_name": "vit_nosuch_patch16_224"}, "model_cfg", "vision_cfg")
        return InputError, f"{config}: cannot build this architecture"
    if kind == "unknown-text-architecture":
        config = id_folder(folder, BIOMEDBERT_ID) / "config.json"
        _edit_json(config, {"model_type": "pubmedbert-x"})
        return InputError, f"{config} names an architecture"
    assert kind == "no-weights"
    (folder / WEIGHTS).unlink()
    return InputError, "no weights"


@pytest.mark.parametrize(
    "kind",
    [
        "truncated-bin",
        "truncated-safetensors",
        "missing-vocab",
        "unknown-vision-architecture",
        "unknown-text-architecture",
        "no-weights",
    ],
)
def test_a_damaged_snapshot_fails_in_one_line(
    snapshot_copy: Path, kind: str, no_network: list[str]
) -> None:
    error, named = _damage(snapshot_copy, kind)
    with pytest.raises(error) as err:
        load_encoder(str(snapshot_copy))
    message = str(err.value)
    assert named in message and "\n" not in message


def test_an_architecture_recorded_from_the_hub_loads_from_a_bundle(
    biomedclip_snapshot: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_network: list[str],
) -> None:
    """What a checkpoint trained from `hf-hub:` on a connected machine records in its sidecar
    builds offline from a bundle holding that repository and its text model."""
    from medcap.encoder.factory import make_tokenizer, model_from_config

    config = json.loads((biomedclip_snapshot / "open_clip_config.json").read_text())["model_cfg"]
    hub = f"hf-hub:{BIOMEDCLIP_ID}"
    architecture = {"name": hub, "config": config, "tokenizer": hub}
    with pytest.raises(OfflineFetchError, match=f"text model {BIOMEDBERT_ID!r}"):
        model_from_config(config, named_in="best.json")  # offline, no bundle: at once
    bare = Path(shutil.copytree(biomedclip_snapshot, tmp_path / "bare"))
    shutil.rmtree(id_folder(bare, BIOMEDBERT_ID))
    text_model = id_folder(biomedclip_snapshot, BIOMEDBERT_ID)
    bundle = write_bundle(
        tmp_path / "bundle",
        [
            ("model", BIOMEDCLIP_ID, "encoder", bare),
            ("model", BIOMEDBERT_ID, "text-model", text_model),
        ],
    )
    monkeypatch.setenv(BUNDLE_ENV, str(bundle))
    tokens = make_tokenizer(architecture)(TEXTS)
    reference = load_encoder(str(biomedclip_snapshot)).tokenize(TEXTS)
    assert torch.equal(tokens, reference)
    assert model_from_config(config, named_in="best.json").text.config.model_type == "bert"


def test_editing_the_snapshot_config_changes_the_fingerprint(snapshot_copy: Path) -> None:
    """Fingerprints are cached by the weights file and the config beside it: a config edited
    in place (same weights, another context length) is hashed again, never served stale."""
    before = load_encoder(str(snapshot_copy))
    assert load_encoder(str(snapshot_copy)).fingerprint == before.fingerprint  # from the cache
    config = snapshot_copy / "open_clip_config.json"
    _edit_json(config, {"context_length": 128}, "model_cfg", "text_cfg")
    after = load_encoder(str(snapshot_copy))
    assert after.tokenize(TEXTS).shape == (2, 128)
    assert after.fingerprint != before.fingerprint
