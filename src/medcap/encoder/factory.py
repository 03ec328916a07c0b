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
from medcap.encoder.hub import ensure_fetchable, fetch_failed
from medcap.encoder.spec import (
    HUB_PREFIX,
    EncoderSpec,
    is_arch_config,
    read_json,
    register_builtin_configs,
)
from medcap.errors import CorruptArtifactError, InputError, first_line

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
    architecture: dict[str, Any]
    sidecar: dict[str, Any] | None = None  # checkpoint specs only
    checkpoint_key: str | None = None  # the loaded file's identity (checkpoint.checkpoint_key)


def default_preprocess_cfg(image_size: Any) -> dict[str, Any]:
    """open_clip's default preprocessing (OpenAI mean/std, bicubic, shortest side)."""
    from open_clip.transform import PreprocessCfg

    cfg = asdict(PreprocessCfg())
    cfg["size"] = image_size
    return cfg


def model_from_config(cfg: dict[str, Any]) -> Any:
    """Instantiate an open_clip CLIP/CustomTextCLIP/CoCa from a model config (random init)."""
    import open_clip

    cfg = copy.deepcopy(cfg)
    text_cfg, vision_cfg = cfg["text_cfg"], cfg["vision_cfg"]
    hf_text = "hf_model_name" in text_cfg
    if hf_text:
        text_cfg["hf_model_pretrained"] = False  # weights come from the checkpoint, never the hub
    if "timm_model_name" in vision_cfg:
        vision_cfg["timm_model_pretrained"] = False
    custom_text = bool(cfg.pop("custom_text", False)) or hf_text
    if "multimodal_cfg" in cfg:
        model_class: Any = open_clip.CoCa
    else:
        model_class = open_clip.CustomTextCLIP if custom_text else open_clip.CLIP
    try:
        model = model_class(**cfg)
    except (TypeError, ValueError, KeyError, AssertionError) as exc:
        raise InputError(f"invalid open_clip architecture config: {exc}") from None
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
    if name and (name.startswith(HUB_PREFIX) or name in open_clip.list_models()):
        return open_clip.get_tokenizer(name, context_length=context_length)
    if text_cfg.get("hf_tokenizer_name"):
        from open_clip.tokenizer import HFTokenizer

        return HFTokenizer(text_cfg["hf_tokenizer_name"], context_length=context_length)
    return open_clip.SimpleTokenizer(
        context_length=context_length or 77, **(text_cfg.get("tokenizer_kwargs") or {})
    )


def _seeded_random_model(cfg: dict[str, Any], seed: int) -> Any:
    # A random-init spec must name one set of weights, so an index built with it can be
    # reopened (same spec -> same fingerprint); the caller's RNG state is left untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_from_config(cfg)


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
        try:
            model = open_clip.create_model(spec.name, pretrained=spec.tag)
        except FOREIGN_CHECKPOINT_ERRORS:
            if Path(spec.tag).is_file():
                raise refused_checkpoint(spec.tag) from None
            raise
        except RuntimeError as exc:
            if Path(spec.tag).is_file():
                raise CorruptArtifactError(
                    f"{spec.tag}: cannot load into {spec.name}: {exc}"
                ) from None
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
    model = _seeded_random_model(cfg, seed)
    return BuiltModel(
        model, dict(model.visual.preprocess_cfg), make_tokenizer(architecture), architecture
    )


def _build_checkpoint(spec: EncoderSpec) -> BuiltModel:
    import open_clip

    assert spec.path is not None
    sidecar = read_sidecar(spec.path)
    architecture = sidecar["architecture"]
    model = model_from_config(architecture["config"])
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
    else:
        built = _build_checkpoint(spec)
    built.model.eval()
    log.debug("built encoder %s (%s)", spec.raw, built.architecture["name"])
    return built
