"""Checks of local model folders: each missing or damaged file is named in one line."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch

from medcap.errors import CorruptArtifactError, InputError
from medcap.snapshots.folders import (
    check_chat_template,
    check_model_folder,
    check_safetensors,
    check_tokenizer_files,
    check_torch_zip,
)
from tests.support.network import network_refused


def _write(folder: Path, name: str, data: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(data))
    return path


def _cut(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def test_safetensors_truncation_is_found_from_the_header(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({"a": torch.zeros(64, 64), "b": torch.ones(10)}, path)
    check_safetensors(path)
    size = path.stat().st_size
    _cut(path, size - 8)
    with pytest.raises(CorruptArtifactError) as err:
        check_safetensors(path)
    assert str(err.value) == (
        f"{path}: truncated ({size - 8} bytes, its header needs {size}); copy it again"
    )
    _cut(path, 5)
    with pytest.raises(CorruptArtifactError, match="not a readable safetensors file"):
        check_safetensors(path)


def test_torch_zip_truncation_and_old_pickles(tmp_path: Path) -> None:
    path = tmp_path / "pytorch_model.bin"
    torch.save({"w": torch.zeros(100, 100)}, path)
    check_torch_zip(path)
    _cut(path, path.stat().st_size // 2)
    with pytest.raises(CorruptArtifactError, match=f"{path}: truncated or damaged"):
        check_torch_zip(path)
    legacy = tmp_path / "legacy.bin"
    legacy.write_bytes(b"\x80\x02}q\x00.")  # the pre-zip pickle format: left to torch.load
    check_torch_zip(legacy)


@pytest.mark.parametrize(
    ("tokenizer_class", "present", "missing"),
    [
        ("BertTokenizer", [], "vocab.txt"),
        ("GPT2Tokenizer", ["vocab.json"], "merges.txt"),
        ("Qwen2TokenizerFast", ["merges.txt"], "vocab.json"),
        ("DebertaV2Tokenizer", [], "spm.model"),
    ],
)
def test_tokenizer_files_by_family(
    tmp_path: Path, tokenizer_class: str, present: list[str], missing: str
) -> None:
    _write(tmp_path, "tokenizer_config.json", {"tokenizer_class": tokenizer_class})
    for name in present:
        (tmp_path / name).write_text("x")
    with pytest.raises(InputError) as err:
        check_tokenizer_files(tmp_path, "test model")
    assert str(err.value).startswith(f"{tmp_path / missing} is missing: the test model tokenizer")
    (tmp_path / "tokenizer.json").write_text("{}")  # a fast tokenizer needs nothing else
    check_tokenizer_files(tmp_path, "test model")


def test_tokenizer_family_from_the_model_type_without_tokenizer_config(tmp_path: Path) -> None:
    _write(tmp_path, "config.json", {"model_type": "bert"})
    with pytest.raises(InputError, match="vocab.txt is missing"):
        check_tokenizer_files(tmp_path, "text model")
    (tmp_path / "vocab.txt").write_text("[PAD]\n")
    check_tokenizer_files(tmp_path, "text model")


def test_sharded_weights_name_the_missing_or_cut_shard(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    _write(tmp_path, "config.json", {"model_type": "bert"})
    (tmp_path / "tokenizer.json").write_text("{}")
    shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    _write(
        tmp_path, "model.safetensors.index.json", {"weight_map": {"a": shards[0], "b": shards[1]}}
    )
    save_file({"a": torch.zeros(8)}, tmp_path / shards[0])
    with pytest.raises(InputError) as err:
        check_model_folder(tmp_path, "test model")
    assert str(err.value).startswith(f"{tmp_path / shards[1]} is missing (listed in model.")
    save_file({"b": torch.zeros(1000)}, tmp_path / shards[1])
    assert check_model_folder(tmp_path, "test model") == {"model_type": "bert"}
    _cut(tmp_path / shards[1], 200)
    with pytest.raises(CorruptArtifactError, match=f"{shards[1]}: truncated"):
        check_model_folder(tmp_path, "test model")


def test_chat_template_from_its_file_or_the_tokenizer_config(tmp_path: Path) -> None:
    _write(tmp_path, "tokenizer_config.json", {"tokenizer_class": "Qwen2Tokenizer"})
    with pytest.raises(InputError, match="no chat template for test model"):
        check_chat_template(tmp_path, "test model")
    _write(tmp_path, "tokenizer_config.json", {"chat_template": "{{ messages }}"})
    check_chat_template(tmp_path, "test model")


def test_the_strict_network_guard_refuses_and_records_every_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with network_refused(monkeypatch) as attempts:
        with pytest.raises(OSError):
            socket.getaddrinfo("huggingface.co", 443)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", 9), timeout=1)
        with pytest.raises(OSError), socket.socket() as raw:
            raw.connect(("127.0.0.1", 9))
    assert len(attempts) == 3
    assert socket.getaddrinfo("127.0.0.1", 9)  # restored afterwards
