"""Checks of a local model folder (a copied hub snapshot) before a library reads it.

The libraries fail late and unclearly on an incomplete copy: transformers builds a tokenizer
with an empty vocabulary when `vocab.txt` is missing, safetensors reports "incomplete
metadata" without the file name. These checks name the missing or damaged file in one
line: `InputError` for a missing file (an incomplete copy), `CorruptArtifactError` for a
truncated one.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path
from typing import Any

from medcap.errors import CorruptArtifactError, InputError

CONFIG = "config.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
PREPROCESSOR_CONFIG = "preprocessor_config.json"  # the image processor, as hub repos have it
PROCESSOR_CONFIG = "processor_config.json"  # transformers 5 saves the image processor inside
FAST_TOKENIZER = "tokenizer.json"
SINGLE_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
CHAT_TEMPLATE_FILES = ("chat_template.json", "chat_template.jinja")

# The vocabulary files of a slow tokenizer, by family (any one set is enough); a fast
# `tokenizer.json` replaces them all.
VOCAB_FILES: dict[str, tuple[tuple[str, ...], ...]] = {
    "wordpiece": (("vocab.txt",),),
    "bpe": (("vocab.json", "merges.txt"),),
    "sentencepiece": (("spm.model",), ("tokenizer.model",), ("sentencepiece.bpe.model",)),
}
# tokenizer_class (without "Fast") or config model_type -> family
_FAMILIES: dict[str, str] = {
    **dict.fromkeys(("bert", "distilbert", "electra", "mpnet", "funnel"), "wordpiece"),
    **dict.fromkeys(
        ("gpt2", "roberta", "qwen2", "qwen2_vl", "opt", "bart", "deberta", "longformer"), "bpe"
    ),
    **dict.fromkeys(("deberta-v2", "debertav2", "t5", "llama", "xlm-roberta"), "sentencepiece"),
}


def _fix(what: str) -> str:
    return f"copy the whole {what} repository folder again (or use a `medcap fetch` bundle)"


def read_json_file(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from a model folder; one-line errors for a missing or damaged file."""
    if not path.is_file():
        raise InputError(f"{path} is missing: {what} needs it; {_fix(what)}")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptArtifactError(f"{path}: damaged ({exc}); {_fix(what)}") from None
    if not isinstance(data, dict):
        raise CorruptArtifactError(f"{path}: not a JSON object; {_fix(what)}")
    return data


def cached_hub_folder(repo: str) -> Path | None:
    """The Hugging Face cache's snapshot folder of model `repo` when its config.json is
    cached (the files beside it are checked by the caller), else None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(repo_id=repo, filename=CONFIG)
    except ValueError:  # not a valid repo id
        return None
    return Path(found).parent if isinstance(found, str) else None


def check_safetensors(path: Path) -> None:
    """Raise CorruptArtifactError when a .safetensors file is shorter than its header says."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as handle:
            (header_len,) = struct.unpack("<Q", handle.read(8))
            if header_len > size:
                raise ValueError("header longer than the file")
            header = json.loads(handle.read(header_len))
        ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    except (OSError, struct.error, ValueError, KeyError, TypeError, IndexError) as exc:
        raise CorruptArtifactError(
            f"{path}: not a readable safetensors file ({exc}); it is damaged or truncated, "
            "copy it again"
        ) from None
    expected = 8 + header_len + max(ends, default=0)
    if size < expected:
        raise CorruptArtifactError(
            f"{path}: truncated ({size} bytes, its header needs {expected}); copy it again"
        )


def check_torch_zip(path: Path) -> None:
    """Raise CorruptArtifactError when a torch.save zip file (.bin/.pt) is cut short.

    Files in the old pickle format (no zip signature) are left to torch.load.
    """
    with open(path, "rb") as handle:
        if handle.read(4) != b"PK\x03\x04":
            return
    try:
        with zipfile.ZipFile(path):
            pass
    except (OSError, zipfile.BadZipFile) as exc:
        raise CorruptArtifactError(f"{path}: truncated or damaged ({exc}); copy it again") from None


def check_weights_file(path: Path) -> None:
    """A truncation check for one weights file, by its format."""
    if path.suffix == ".safetensors":
        check_safetensors(path)
    else:
        check_torch_zip(path)


def weight_files(folder: Path, what: str) -> list[Path]:
    """The weights files of a transformers model folder (all shards), each checked."""
    for name in SINGLE_WEIGHTS:
        if (folder / name).is_file():
            check_weights_file(folder / name)
            return [folder / name]
    for name in WEIGHT_INDEXES:
        if (folder / name).is_file():
            index = read_json_file(folder / name, what)
            shards = sorted(set(map(str, (index.get("weight_map") or {}).values())))
            for shard in shards:
                if not (folder / shard).is_file():
                    raise InputError(
                        f"{folder / shard} is missing (listed in {name}); {_fix(what)}"
                    )
                check_weights_file(folder / shard)
            return [folder / s for s in shards]
    names = ", ".join((*SINGLE_WEIGHTS, *WEIGHT_INDEXES))
    raise InputError(f"{folder}: no weights for {what} (none of {names}); {_fix(what)}")


def tokenizer_family(folder: Path) -> str | None:
    """wordpiece | bpe | sentencepiece for a folder's tokenizer, None when unknown."""
    names = []
    if (folder / TOKENIZER_CONFIG).is_file():
        names.append(
            str(read_json_file(folder / TOKENIZER_CONFIG, "tokenizer").get("tokenizer_class") or "")
        )
    if (folder / CONFIG).is_file():
        names.append(str(read_json_file(folder / CONFIG, "model").get("model_type") or ""))
    for name in names:
        key = name.removesuffix("Fast").removesuffix("Tokenizer").lower()
        if key in _FAMILIES:
            return _FAMILIES[key]
    return None


def check_tokenizer_files(folder: Path, what: str) -> None:
    """The tokenizer's vocabulary is there: `tokenizer.json`, or the slow tokenizer's files."""
    if (folder / FAST_TOKENIZER).is_file():
        return
    family = tokenizer_family(folder)
    if family is None:
        if not (folder / TOKENIZER_CONFIG).is_file():
            raise InputError(
                f"{folder}: no tokenizer for {what} ({FAST_TOKENIZER} or {TOKENIZER_CONFIG} "
                f"missing); {_fix(what)}"
            )
        return  # an unfamiliar tokenizer class: left to the library
    options = VOCAB_FILES[family]
    if any(all((folder / n).is_file() for n in names) for names in options):
        return
    missing = [n for n in options[0] if not (folder / n).is_file()]
    raise InputError(
        f"{folder / missing[0]} is missing: the {what} tokenizer needs it (or "
        f"{FAST_TOKENIZER}); {_fix(what)}"
    )


def check_chat_template(folder: Path, what: str) -> None:
    """A chat template is there: its own file or a `chat_template` in tokenizer_config.json."""
    if any((folder / name).is_file() for name in CHAT_TEMPLATE_FILES):
        return
    config = folder / TOKENIZER_CONFIG
    if config.is_file() and read_json_file(config, what).get("chat_template"):
        return
    raise InputError(
        f"{folder}: no chat template for {what} ({' or '.join(CHAT_TEMPLATE_FILES)}, or "
        f"chat_template in {TOKENIZER_CONFIG}); {_fix(what)}"
    )


def check_image_processor(folder: Path, what: str) -> None:
    """The image processor's config is there: preprocessor_config.json (hub repositories),
    or an `image_processor` entry in processor_config.json (saved by transformers 5)."""
    combined = folder / PROCESSOR_CONFIG
    if combined.is_file() and "image_processor" in read_json_file(combined, what):
        return
    read_json_file(folder / PREPROCESSOR_CONFIG, what)


def check_model_folder(
    folder: Path,
    what: str,
    *,
    weights: bool = True,
    tokenizer: bool = True,
    processor: bool = False,
    chat_template: bool = False,
) -> dict[str, Any]:
    """Check a transformers model folder for what `what` reads; returns its config.json."""
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder; pass the model's local directory")
    config = read_json_file(folder / CONFIG, what)
    if weights:
        weight_files(folder, what)
    if tokenizer:
        check_tokenizer_files(folder, what)
    if processor:
        check_image_processor(folder, what)
    if chat_template:
        check_chat_template(folder, what)
    return config
