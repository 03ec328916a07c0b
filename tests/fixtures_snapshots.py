"""Fixtures that mirror the real hub repositories (built once per session, offline) and a
stricter network guard for the tests that load them.

`no_network` refuses every socket connect (loopback included) and every DNS lookup while a
test runs and fails the test if anything tried: these loads must not even attempt the hub.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = [
    "biomedclip_snapshot",
    "blip2_repo",
    "bertscore_repo",
    "mirror_texts",
    "no_network",
    "qwen2vl_repo",
    "snapshot_copy",
]


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every connect and DNS lookup raises and is recorded; the test fails if any happened."""
    from tests.support.network import network_refused

    with network_refused(monkeypatch) as attempts:
        yield attempts
    assert attempts == [], f"network was tried: {attempts}"


@pytest.fixture(scope="session")
def mirror_texts() -> list[str]:
    """Phantom captions the mirrored tokenizers are trained on."""
    from tests.support.mirror_tokenizers import phantom_captions

    return phantom_captions(200)


@pytest.fixture(scope="session")
def biomedclip_snapshot(tmp_path_factory: pytest.TempPathFactory, mirror_texts: list[str]) -> Path:
    """A shrunk BiomedCLIP snapshot shipping its BiomedBERT text model in a subfolder named
    after the hub id. Copy it (`snapshot_copy`) before changing anything in it."""
    from tests.support.mirror_repos import (
        BIOMEDBERT_ID,
        id_folder,
        write_biomedbert,
        write_biomedclip,
    )

    root = tmp_path_factory.mktemp("mirrors") / "BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
    text_model = write_biomedbert(id_folder(root, BIOMEDBERT_ID), mirror_texts)
    return write_biomedclip(root, text_model, mirror_texts)


@pytest.fixture()
def snapshot_copy(tmp_path: Path, biomedclip_snapshot: Path) -> Path:
    """A private copy of the BiomedCLIP snapshot that a test may damage."""
    return Path(shutil.copytree(biomedclip_snapshot, tmp_path / biomedclip_snapshot.name))


@pytest.fixture(scope="session")
def qwen2vl_repo(tmp_path_factory: pytest.TempPathFactory, mirror_texts: list[str]) -> Path:
    """A shrunk Qwen/Qwen2-VL-2B-Instruct mirror (random weights)."""
    from tests.support.mirror_repos import write_qwen2vl

    return write_qwen2vl(tmp_path_factory.mktemp("mirrors") / "Qwen2-VL-2B-Instruct", mirror_texts)


@pytest.fixture(scope="session")
def blip2_repo(tmp_path_factory: pytest.TempPathFactory, mirror_texts: list[str]) -> Path:
    """A shrunk Salesforce/blip2-opt-2.7b mirror (random weights)."""
    from tests.support.mirror_repos import write_blip2

    return write_blip2(tmp_path_factory.mktemp("mirrors") / "blip2-opt-2.7b", mirror_texts)


@pytest.fixture(scope="session")
def bertscore_repo(tmp_path_factory: pytest.TempPathFactory, mirror_texts: list[str]) -> Path:
    """A shrunk microsoft/deberta-xlarge-mnli mirror (random weights), in a folder of its name."""
    from tests.support.mirror_repos import write_bertscore_model

    folder = tmp_path_factory.mktemp("mirrors") / "deberta-xlarge-mnli"
    return write_bertscore_model(folder, mirror_texts)
