"""open_clip's Hugging Face text towers, offline: the hub ids a config names, found locally.

BiomedCLIP's `open_clip_config.json` names its text tower by hub id (`text_cfg.hf_model_name`,
`hf_tokenizer_name`), and open_clip hands that id to `AutoConfig.from_pretrained` and
`AutoTokenizer.from_pretrained`, which reach for the hub. medcap looks for a local folder
of that id first and passes the folder instead (in a copy of the config; the architecture
record keeps the id, so fingerprints do not depend on where the folder is):

1. inside the snapshot (or beside the architecture file): `<dir>/<org>--<name>/` or
   `<dir>/<org>/<name>/`;
2. `MEDCAP_TEXT_MODEL_DIR`: the text model's folder itself, or a folder holding it as above;
3. the active bundle (`MEDCAP_BUNDLE`, `medcap --bundle`);
4. the Hugging Face cache.

Only the text model's config and tokenizer are read there: the tower's weights come from the
CLIP checkpoint, as in open_clip. A local snapshot never goes to the network: when the id is
found nowhere, one line names it and every place looked in.
"""

from __future__ import annotations

import os
from pathlib import Path

from medcap.errors import InputError, OfflineFetchError
from medcap.offline import is_offline
from medcap.snapshots.bundle import bundle_model_dir, bundle_note
from medcap.snapshots.folders import (
    CONFIG,
    cached_hub_folder,
    check_tokenizer_files,
    read_json_file,
)

TEXT_MODEL_ENV = "MEDCAP_TEXT_MODEL_DIR"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json")


def id_folders(root: Path, model_id: str) -> list[Path]:
    """Where a folder named after hub id `org/name` may sit under `root`."""
    return [root / model_id.replace("/", "--"), root / model_id]


def _env_folders(model_id: str) -> list[Path]:
    value = os.environ.get(TEXT_MODEL_ENV, "").strip()
    if not value:
        return []
    root = Path(value).expanduser()
    return [*id_folders(root, model_id), root]


def find_text_model(model_id: str, near: Path | None) -> Path | None:
    """The local folder (with config.json) of hub model `model_id`, or None."""
    folders = [*(id_folders(near, model_id) if near else []), *_env_folders(model_id)]
    for folder in folders:
        if (folder / CONFIG).is_file():
            return folder
    bundled = bundle_model_dir(model_id)
    if bundled is not None and (bundled / CONFIG).is_file():
        return bundled
    return cached_hub_folder(model_id)


def _looked_in(model_id: str, near: Path | None) -> str:
    places = [str(p) for p in id_folders(near, model_id)] if near else []
    env = os.environ.get(TEXT_MODEL_ENV, "").strip()
    places.append(f"{TEXT_MODEL_ENV}={env}" if env else f"{TEXT_MODEL_ENV} (unset)")
    places += [bundle_note(), "the Hugging Face cache"]
    return ", ".join(places)


def resolve_text_model(
    model_id: str,
    *,
    near: Path | None,
    named_in: str,
    may_fetch: bool,
    tokenizer: bool = False,
) -> str:
    """A local folder for the text model `model_id` (checked for its tokenizer files when
    `tokenizer`), or the id itself when nothing local has it and `may_fetch` (online only).

    `near` is the snapshot folder (or the folder of the config naming the id); `named_in`
    says where the id comes from, for the message.
    """
    local = find_text_model(model_id, near)
    if local is not None:
        check_text_config(local, model_id)
        if tokenizer:
            check_tokenizer_files(local, f"text model {model_id}")
        return str(local)
    if may_fetch and not is_offline("models"):
        return model_id
    fix = id_folders(near, model_id)[0] if near else Path(f"DIR/{model_id.replace('/', '--')}")
    raise OfflineFetchError(
        f"text model {model_id!r} ({named_in}) is not on this machine; looked in "
        f"{_looked_in(model_id, near)}; copy its folder (config.json and tokenizer files) "
        f"to {fix}, set {TEXT_MODEL_ENV}, or use a `medcap fetch` bundle"
    )


def check_text_config(folder: Path, model_id: str) -> None:
    """The text model's config.json names an architecture transformers knows (else one line
    naming the file, instead of transformers' multi-line error from inside open_clip)."""
    import transformers

    config = read_json_file(folder / CONFIG, f"text model {model_id}")
    model_type = config.get("model_type")
    if model_type not in transformers.CONFIG_MAPPING:
        raise InputError(
            f"{folder / CONFIG} names an architecture this transformers "
            f"{transformers.__version__} does not know (model_type {model_type!r}); "
            f"it must be the config of text model {model_id}"
        )


def own_tokenizer_folder(snapshot: Path | None) -> Path | None:
    """The snapshot itself when it ships tokenizer files (as open_clip's local-dir loading
    reads them, and as BiomedCLIP's repository has them), else None."""
    if snapshot is not None and any((snapshot / n).is_file() for n in TOKENIZER_FILES):
        return snapshot
    return None
