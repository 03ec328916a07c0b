"""Item 7: a checkpoint's fingerprint comes from the weights loaded, never from its sidecar."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from medcap.encoder import load_encoder
from medcap.errors import IndexMismatchError
from medcap.index import open_index
from medcap.retrieval.retriever import open_retriever
from tests.attack.helpers import overwrite_weights


def test_same_size_weights_beside_the_original_sidecar_are_refused(
    attack_index: Path, attack_checkpoint: Path, tmp_path: Path
) -> None:
    # A copy of the index's checkpoint folder whose best.pt gets other weights of the
    # same byte size, its modification time set back; best.json stays the original.
    folder = tmp_path / "run"
    shutil.copytree(attack_checkpoint.parent, folder)
    checkpoint = folder / "best.pt"
    original = load_encoder(str(checkpoint), device="cpu").fingerprint
    assert original == open_index(attack_index).manifest.fingerprint
    overwrite_weights(checkpoint, lambda v: v * 1.5)
    replaced = load_encoder(str(checkpoint), device="cpu")
    assert replaced.fingerprint != original
    with pytest.raises(IndexMismatchError, match="fingerprint"):
        open_retriever(attack_index, device="cpu", model=str(checkpoint))


def test_the_hash_is_cached_by_file_identity(attack_checkpoint: Path) -> None:
    from medcap.encoder.checkpoint import cached_fingerprint, fingerprint_state

    encoder = load_encoder(str(attack_checkpoint), device="cpu")
    expected = fingerprint_state(encoder.architecture, encoder.model.state_dict())
    assert encoder.fingerprint == expected
    assert cached_fingerprint(attack_checkpoint) == expected  # reused while the file is unchanged
