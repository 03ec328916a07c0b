"""Spec parsing for every form, and the offline hub error."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from medcap.config import DEFAULTS, replace_set
from medcap.encoder import load_encoder, parse_spec
from medcap.encoder.spec import MODEL_CONFIG_DIR
from medcap.errors import InputError, OfflineFetchError

BIOMEDCLIP = "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"


def _tiny_arch(tmp_path: Path, name: str = "my-arch", embed_dim: int = 32) -> Path:
    cfg = json.loads((MODEL_CONFIG_DIR / "medcap-tiny.json").read_text())
    cfg["embed_dim"] = embed_dim
    cfg["vision_cfg"].update(layers=1, width=64, patch_size=16)
    cfg["text_cfg"].update(layers=1)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return path


@pytest.fixture()
def empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HOME", str(tmp_path))  # ~/.cache/clip for URL-hosted tags


def test_builtin_name_with_and_without_tag() -> None:
    plain = parse_spec("medcap-tiny")
    assert (plain.kind, plain.name, plain.tag) == ("builtin", "medcap-tiny", None)
    tagged = parse_spec("ViT-B-16:laion2b_s34b_b88k")
    assert (tagged.kind, tagged.name, tagged.tag) == ("builtin", "ViT-B-16", "laion2b_s34b_b88k")
    assert parse_spec("ViT-B/16").name == "ViT-B-16"


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(InputError) as err:
        parse_spec("ViT-Q-99")
    message = str(err.value)
    assert "ViT-Q-99" in message and "medcap-tiny" in message and "ViT-B-16" in message
    assert "\n" not in message


def test_unknown_tag_lists_known_tags() -> None:
    with pytest.raises(InputError, match="laion2b_s34b_b88k"):
        parse_spec("ViT-B-16:not-a-tag")


def test_hub_spec_forms() -> None:
    spec = parse_spec(BIOMEDCLIP)
    assert spec.kind == "hub" and spec.name == BIOMEDCLIP.removeprefix("hf-hub:")
    for bad in ("hf-hub:", "hf-hub:no-slash", "hf-hub:a/b/c"):
        with pytest.raises(InputError, match="hf-hub:ORG/REPO"):
            parse_spec(bad)


def test_architecture_json_builds_seeded_random_model(tmp_path: Path) -> None:
    path = _tiny_arch(tmp_path)
    spec = parse_spec(str(path))
    assert spec.kind == "arch_json" and spec.path == path
    first, second = load_encoder(str(path)), load_encoder(str(path))
    assert first.embed_dim == 32
    assert first.fingerprint == second.fingerprint  # same spec -> same random weights
    other_seed = load_encoder(str(path), cfg=replace_set(DEFAULTS.encoder, init_seed=1))
    assert other_seed.fingerprint != first.fingerprint
    vectors = first.encode_texts(["chest x-ray"])
    assert vectors.shape == (1, 32)


def test_json_that_is_no_architecture_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.json"
    path.write_text(json.dumps({"hello": 1}))
    with pytest.raises(InputError, match="architecture"):
        parse_spec(str(path))


def test_missing_and_incomplete_paths(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        parse_spec(str(tmp_path / "missing.pt"))
    bare = tmp_path / "weights.pt"
    torch.save({"state_dict": {}}, bare)
    with pytest.raises(InputError, match="sidecar"):
        parse_spec(str(bare))
    with pytest.raises(InputError, match="best.pt"):
        parse_spec(str(tmp_path))


def test_name_with_weights_file_loads_those_weights(tmp_path: Path) -> None:
    reference = load_encoder("medcap-tiny")
    state = reference.model.state_dict()
    state = {k: v + 0.01 if k == "text_projection" else v for k, v in state.items()}
    weights = tmp_path / "tiny_weights.pt"
    torch.save({"state_dict": state}, weights)
    spec = parse_spec(f"medcap-tiny:{weights}")
    assert spec.kind == "builtin" and spec.tag == str(weights)
    loaded = load_encoder(f"medcap-tiny:{weights}")
    assert loaded.fingerprint != reference.fingerprint
    expected = reference.model.text_projection.detach() + 0.01
    assert torch.equal(loaded.model.text_projection.detach(), expected)


@pytest.mark.parametrize("spec", [BIOMEDCLIP, "ViT-B-16:laion2b_s34b_b88k", "RN50:openai"])
def test_offline_hub_spec_fails_at_once(spec: str, empty_hub_cache: None) -> None:
    start = time.monotonic()
    with pytest.raises(OfflineFetchError) as err:
        load_encoder(spec)
    message = str(err.value)
    assert spec in message and "local checkpoint" in message and "\n" not in message
    assert time.monotonic() - start < 10


def test_unreachable_hub_without_offline_flag(
    monkeypatch: pytest.MonkeyPatch, empty_hub_cache: None
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    cfg = replace_set(DEFAULTS.encoder, hub_probe_timeout_s=1.0)
    with pytest.raises(OfflineFetchError, match="unreachable"):
        load_encoder(BIOMEDCLIP, cfg=cfg)  # conftest refuses non-loopback sockets


def test_random_builtin_is_deterministic() -> None:
    a, b = load_encoder("medcap-tiny"), load_encoder("medcap-tiny")
    assert a.fingerprint == b.fingerprint
    texts = ["MRI of the brain", "CT of the abdomen"]
    np.testing.assert_array_equal(a.encode_texts(texts), b.encode_texts(texts))
