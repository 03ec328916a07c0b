"""Build an open_clip model, its preprocessing config and tokenizer from a parsed spec."""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from medcap.encoder.checkpoint import (
    FOREIGN_CHECKPOINT_ERRORS,
    checkpoint_key,
    read_sidecar,
    refused_checkpoint,
)
from medcap.encoder.hf_text import own_tokenizer_folder, resolve_text_model
from medcap.encoder.hub import ensure_fetchable, fetch_failed
from medcap.encoder.spec import (
    HUB_PREFIX,
    SNAPSHOT_CONFIG,
    EncoderSpec,
    is_arch_config,
    read_json,
    register_builtin_configs,
)
from medcap.errors import CorruptArtifactError, InputError, MedcapError, first_line
from medcap.snapshots.bundle import bundle_model_dir
from medcap.snapshots.folders import check_tokenizer_files, check_weights_file

log = logging.getLogger(__name__)


@dataclass
class BuiltModel:
    """An open_clip model on CPU in fp32, plus what is needed to feed it and to rebuild it.

    `architecture` is JSON-able: {"name", "config" (open_clip model cfg), "tokenizer"
    (an open_clip name for `get_tokenizer`, or None for the bundled BPE tokenizer)}.
    """

    model: Any  # open_clip CLIP / CustomTextCLIP (untyped)
    preprocess_cfg: dict[str, Any]
    tokenizer: Any
    architecture: dict[str, Any]  # + "snapshot": the folder it came from (snapshot specs)
    sidecar: dict[str, Any] | None = None  # checkpoint specs only
    checkpoint_key: str | None = None  # the loaded file's identity (checkpoint.checkpoint_key)


def default_preprocess_cfg(image_size: Any) -> dict[str, Any]:
    """open_clip's default preprocessing (OpenAI mean/std, bicubic, shortest side)."""
    from open_clip.transform import PreprocessCfg

    cfg = asdict(PreprocessCfg())
    cfg["size"] = image_size
    return cfg


def model_from_config(
    cfg: dict[str, Any],
    *,
    near: Path | None = None,
    named_in: str = "an open_clip config",
    may_fetch: bool = True,
) -> Any:
    """Instantiate an open_clip CLIP/CustomTextCLIP/CoCa from a model config (random init).

    A Hugging Face text tower (`text_cfg.hf_model_name`) is built from a local folder of
    that id when one is found (see medcap.encoder.hf_text; `near` is the snapshot folder),
    else fetched by id only when `may_fetch` and online; `named_in` names the config file.
    """
    import open_clip

    cfg = copy.deepcopy(cfg)
    text_cfg, vision_cfg = cfg["text_cfg"], cfg["vision_cfg"]
    hf_text = "hf_model_name" in text_cfg
    if hf_text:
        text_cfg["hf_model_pretrained"] = False  # weights come from the checkpoint, never the hub
        text_cfg["hf_model_name"] = resolve_text_model(
            str(text_cfg["hf_model_name"]),
            near=near,
            named_in=f"text_cfg.hf_model_name in {named_in}",
            may_fetch=may_fetch,
        )
    if "timm_model_name" in vision_cfg:
        vision_cfg["timm_model_pretrained"] = False
    custom_text = bool(cfg.pop("custom_text", False)) or hf_text
    if "multimodal_cfg" in cfg:
        model_class: Any = open_clip.CoCa
    else:
        model_class = open_clip.CustomTextCLIP if custom_text else open_clip.CLIP
    try:
        model = model_class(**cfg)
    except (TypeError, ValueError, KeyError, AssertionError, RuntimeError, OSError) as exc:
        # unknown timm or transformers architectures, a text config that cannot be read
        raise InputError(
            f"{named_in}: cannot build this architecture ({first_line(exc, 240)}); "
            "check the model names and fields in it"
        ) from None
    image_size = getattr(model.visual, "image_size", vision_cfg.get("image_size", 224))
    open_clip.set_model_preprocess_cfg(model, default_preprocess_cfg(image_size))
    return model


def make_tokenizer(architecture: dict[str, Any]) -> Any:
    """The tokenizer for an architecture record (see BuiltModel.architecture)."""
    import open_clip

    text_cfg = architecture["config"]["text_cfg"]
    context_length = text_cfg.get("context_length")
    name = architecture.get("tokenizer")
    register_builtin_configs()
    if text_cfg.get("hf_tokenizer_name"):  # found locally first (see _hf_tokenizer)
        return _hf_tokenizer(architecture, text_cfg, context_length)
    if name and (name.startswith(HUB_PREFIX) or name in open_clip.list_models()):
        return open_clip.get_tokenizer(name, context_length=context_length)
    return open_clip.SimpleTokenizer(
        context_length=context_length or 77, **(text_cfg.get("tokenizer_kwargs") or {})
    )


def _hf_tokenizer(
    architecture: dict[str, Any], text_cfg: dict[str, Any], context_length: Any
) -> Any:
    """open_clip's HFTokenizer from local files: the snapshot's own tokenizer files (as
    open_clip's local-dir loading and BiomedCLIP's repository have them; for a hub model, its
    bundle copy's), else the folder of `hf_tokenizer_name`; by id from the hub only for
    non-snapshot specs when online."""
    from open_clip.tokenizer import HFTokenizer

    snapshot = Path(architecture["snapshot"]) if architecture.get("snapshot") else None
    name = str(architecture.get("tokenizer") or "")
    if snapshot is None and name.startswith(HUB_PREFIX):  # a hub model: the bundle's copy
        snapshot = bundle_model_dir(name.removeprefix(HUB_PREFIX))
    own = own_tokenizer_folder(snapshot)
    if own is not None:
        check_tokenizer_files(own, f"open_clip snapshot {own}")
        source = str(own)
    else:
        source = resolve_text_model(
            str(text_cfg["hf_tokenizer_name"]),
            near=snapshot,
            named_in="text_cfg.hf_tokenizer_name",
            may_fetch=snapshot is None,
            tokenizer=True,
        )
    try:
        return HFTokenizer(
            source,
            context_length=context_length,
            tokenizer_mode=text_cfg.get("tokenizer_mode"),
            **(text_cfg.get("tokenizer_kwargs") or {}),
        )
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise InputError(
            f"{source}: cannot load the tokenizer ({first_line(exc, 240)}); copy its files again"
        ) from None


def load_weights(model: Any, path: Path) -> None:
    """Load a weights file into `model` (strict; `.bin`/`.pt` with weights_only=True, never
    pickled code); a truncated or unreadable file is a one-line CorruptArtifactError."""
    import open_clip

    check_weights_file(path)
    try:
        open_clip.load_checkpoint(model, str(path), strict=True, weights_only=True)
    except MedcapError:
        raise
    except FOREIGN_CHECKPOINT_ERRORS:
        raise refused_checkpoint(path) from None
    except Exception as exc:  # noqa: BLE001 - torch, pickle and safetensors errors all mean damaged
        raise CorruptArtifactError(
            f"{path}: cannot load these weights ({type(exc).__name__}: {first_line(exc, 200)}); "
            "copy the file again or pass weights of this architecture"
        ) from None


def _seeded_random_model(cfg: dict[str, Any], seed: int, **options: Any) -> Any:
    # A random-init spec must name one set of weights, so an index built with it can be
    # reopened (same spec -> same fingerprint); the caller's RNG state is left untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_from_config(cfg, **options)


def _build_builtin(spec: EncoderSpec, seed: int, probe_timeout_s: float) -> BuiltModel:
    import open_clip

    register_builtin_configs()
    cfg = open_clip.get_model_config(spec.name)
    architecture = {"name": spec.name, "config": cfg, "tokenizer": spec.name}
    if spec.tag is None:
        model = _seeded_random_model(cfg, seed)
        pp = dict(model.visual.preprocess_cfg)
    else:
        ensure_fetchable(spec, probe_timeout_s=probe_timeout_s)
        if Path(spec.tag).is_file():  # NAME:weights, loaded as a snapshot's weights are
            model = _seeded_random_model(cfg, seed)
            load_weights(model, Path(spec.tag))
        else:
            try:
                model = open_clip.create_model(spec.name, pretrained=spec.tag)
            except RuntimeError as exc:
                raise fetch_failed(spec, exc) from None
        pp = dict(model.visual.preprocess_cfg)
    return BuiltModel(model, pp, make_tokenizer(architecture), architecture)


def _build_hub(spec: EncoderSpec, probe_timeout_s: float) -> BuiltModel:
    import open_clip

    ensure_fetchable(spec, probe_timeout_s=probe_timeout_s)
    name = HUB_PREFIX + spec.name
    try:
        cfg = open_clip.get_model_config(name)
        model = open_clip.create_model(name)
        architecture = {"name": name, "config": cfg, "tokenizer": name}
        tokenizer = make_tokenizer(architecture)
    except Exception as exc:  # noqa: BLE001 - any failure to fetch becomes one line
        raise fetch_failed(spec, exc) from None
    return BuiltModel(model, dict(model.visual.preprocess_cfg), tokenizer, architecture)


def _build_arch_json(spec: EncoderSpec, seed: int) -> BuiltModel:
    assert spec.path is not None
    cfg = read_json(spec.path, "architecture config")
    cfg = cfg.get("model_cfg", cfg)  # open_clip_config.json files nest it
    if not is_arch_config(cfg):
        raise InputError(f"{spec.path}: not an open_clip architecture config")
    architecture = {"name": spec.path.stem, "config": cfg, "tokenizer": None}
    model = _seeded_random_model(cfg, seed, near=spec.path.parent, named_in=str(spec.path))
    return BuiltModel(
        model, dict(model.visual.preprocess_cfg), make_tokenizer(architecture), architecture
    )


def _build_snapshot(spec: EncoderSpec) -> BuiltModel:
    """An open_clip snapshot folder: its config, weights, preprocessing and tokenizer, all
    read from disk (an HF text tower from a local folder; see medcap.encoder.hf_text)."""
    import open_clip
    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    folder, weights = spec.snapshot_dir, spec.path
    assert folder is not None and weights is not None
    config_path = folder / SNAPSHOT_CONFIG
    raw = read_json(config_path, "open_clip snapshot config")
    cfg = raw.get("model_cfg")
    if not is_arch_config(cfg):
        raise InputError(
            f"{config_path}: no model_cfg with embed_dim, vision_cfg and text_cfg; "
            "not an open_clip snapshot config"
        )
    architecture = {"name": spec.name, "config": cfg, "tokenizer": None}
    architecture["snapshot"] = str(folder.resolve())
    model = model_from_config(cfg, near=folder, named_in=str(config_path), may_fetch=False)
    key = checkpoint_key(*spec.identity_files)
    load_weights(model, weights)
    # open_clip's own rule for snapshots: the config's preprocess_cfg over the defaults,
    # with the input size the vision tower was built for.
    pp = merge_preprocess_dict(asdict(PreprocessCfg()), raw.get("preprocess_cfg") or {})
    pp["size"] = getattr(model.visual, "image_size", pp["size"])
    open_clip.set_model_preprocess_cfg(model, pp)
    tokenizer = make_tokenizer(architecture)
    if key != checkpoint_key(*spec.identity_files):
        key = None  # a file changed while it was read: its weights cannot be keyed
    return BuiltModel(model, pp, tokenizer, architecture, None, key)


def _build_checkpoint(spec: EncoderSpec) -> BuiltModel:
    import open_clip

    assert spec.path is not None
    sidecar = read_sidecar(spec.path)
    architecture = sidecar["architecture"]
    snapshot = architecture.get("snapshot")
    model = model_from_config(
        architecture["config"],
        near=Path(snapshot) if snapshot else spec.path.parent,
        named_in=str(spec.sidecar),
        may_fetch=not snapshot,
    )
    key = checkpoint_key(spec.path)
    try:
        open_clip.load_checkpoint(model, str(spec.path), strict=True, weights_only=True)
    except FOREIGN_CHECKPOINT_ERRORS:
        raise refused_checkpoint(spec.path) from None
    except (RuntimeError, OSError, EOFError, KeyError, ValueError) as exc:
        raise CorruptArtifactError(
            f"{spec.path}: cannot load checkpoint ({first_line(exc, 200)}); retrain or pass another"
        ) from None
    pp = sidecar.get("preprocess") or dict(model.visual.preprocess_cfg)
    open_clip.set_model_preprocess_cfg(model, pp)
    try:
        tokenizer = make_tokenizer(architecture)
    except Exception as exc:  # noqa: BLE001 - a hub tokenizer that cannot be fetched
        raise fetch_failed(spec, exc) from None
    if key != checkpoint_key(spec.path):
        key = None  # the file changed while it was read: its weights cannot be keyed
    return BuiltModel(model, pp, tokenizer, architecture, sidecar, key)


def build_model(spec: EncoderSpec, *, seed: int = 0, probe_timeout_s: float = 3.0) -> BuiltModel:
    """Build the model a spec names, on CPU in fp32 (hub fetches only when online)."""
    if spec.kind == "builtin":
        built = _build_builtin(spec, seed, probe_timeout_s)
    elif spec.kind == "hub":
        built = _build_hub(spec, probe_timeout_s)
    elif spec.kind == "arch_json":
        built = _build_arch_json(spec, seed)
    elif spec.kind == "snapshot":
        built = _build_snapshot(spec)
    else:
        built = _build_checkpoint(spec)
    built.model.eval()
    log.debug("built encoder %s (%s)", spec.raw, built.architecture["name"])
    return built
