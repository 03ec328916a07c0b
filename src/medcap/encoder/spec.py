"""Parse an encoder spec string: the one place that knows the spec forms.

Forms (checked in this order):

- `hf-hub:org/repo`               an open_clip model on the Hugging Face hub
- an existing directory           a `medcap train` output dir; means `DIR/best.pt`
- an existing `*.pt`/`*.pth`/...  a checkpoint with a JSON sidecar (`best.pt` -> `best.json`)
- an existing `*.json`            an open_clip architecture config (random init), or a sidecar
- `NAME` or `NAME:TAG`            a built-in architecture (`open_clip.list_models()` plus
                                  `medcap-tiny`), with an optional pretrained tag or weights file
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from medcap.errors import InputError

SpecKind = Literal["builtin", "hub", "checkpoint", "arch_json"]

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
SIDECAR_FORMAT = "medcap-checkpoint"  # the `format` key of every sidecar medcap writes
HUB_PREFIX = "hf-hub:"
BEST_CHECKPOINT = "best.pt"


@dataclass(frozen=True)
class EncoderSpec:
    """A parsed spec. `name` is the architecture name, the hub id, or the file path."""

    raw: str
    kind: SpecKind
    name: str
    tag: str | None = None  # pretrained tag or weights file (builtin only)
    path: Path | None = None  # checkpoint or architecture file

    @property
    def sidecar(self) -> Path | None:
        """The JSON sidecar of a checkpoint spec."""
        return sidecar_path(self.path) if self.kind == "checkpoint" and self.path else None


def sidecar_path(checkpoint: str | Path) -> Path:
    """`DIR/best.pt` -> `DIR/best.json`."""
    return Path(checkpoint).with_suffix(".json")


def register_builtin_configs() -> None:
    """Make medcap's own architectures (`medcap-tiny`, ...) known to open_clip, once."""
    import open_clip

    ours = {p.stem for p in MODEL_CONFIG_DIR.glob("*.json")}
    if not ours.issubset(open_clip.list_models()):
        open_clip.add_model_config(MODEL_CONFIG_DIR)


def builtin_names() -> list[str]:
    """Every architecture name a spec may use (open_clip's plus medcap's)."""
    import open_clip

    register_builtin_configs()
    return list(open_clip.list_models())


def is_arch_config(cfg: Any) -> bool:
    """True for an open_clip model config (`embed_dim`, `vision_cfg`, `text_cfg`)."""
    return isinstance(cfg, dict) and all(k in cfg for k in ("embed_dim", "vision_cfg", "text_cfg"))


def read_json(path: Path, what: str) -> dict[str, Any]:
    """Read a JSON object, or raise InputError naming the file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read {what} ({exc}); pass a valid JSON file") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: {what} must be a JSON object")
    return data


def _looks_like_path(text: str) -> bool:
    return (
        text.startswith((".", "/", "~"))
        or text.endswith((".json", *CHECKPOINT_SUFFIXES))
        or Path(text).expanduser().exists()
    )


def _parse_path(raw: str, path: Path) -> EncoderSpec:
    if path.is_dir():
        best = path / BEST_CHECKPOINT
        if not best.is_file():
            raise InputError(
                f"{path} is a directory without {BEST_CHECKPOINT}; pass a checkpoint file "
                "or the output directory of a finished `medcap train` run"
            )
        path = best
    if path.suffix in CHECKPOINT_SUFFIXES:
        sidecar = sidecar_path(path)
        if not sidecar.is_file():
            raise InputError(
                f"checkpoint {path} has no sidecar {sidecar.name}; pass a checkpoint written by "
                "`medcap train`, or NAME:{path} to load open_clip weights into architecture NAME"
            )
        return EncoderSpec(raw=raw, kind="checkpoint", name=str(path), path=path)
    if path.suffix == ".json":
        cfg = read_json(path, "encoder spec")
        if cfg.get("format") == SIDECAR_FORMAT:
            weights = Path(str(cfg.get("checkpoint", path.with_suffix(".pt").name)))
            return _parse_path(raw, path.parent / weights)
        if not is_arch_config(cfg):
            raise InputError(
                f"{path}: not an open_clip architecture config (needs embed_dim, vision_cfg, "
                "text_cfg) nor a medcap checkpoint sidecar"
            )
        return EncoderSpec(raw=raw, kind="arch_json", name=path.stem, path=path)
    raise InputError(
        f"{path}: unknown encoder file type {path.suffix!r}; pass a .pt checkpoint with its "
        ".json sidecar, an architecture .json, or a model name"
    )


def parse_spec(spec: str) -> EncoderSpec:
    """Parse a spec string into an EncoderSpec; raise InputError for unknown names or files.

    Example: `parse_spec("ViT-B-16:laion2b_s34b_b88k")` ->
    `EncoderSpec(kind="builtin", name="ViT-B-16", tag="laion2b_s34b_b88k")`.
    """
    raw = spec
    spec = spec.strip()
    if not spec:
        raise InputError("empty encoder spec; pass a model name such as medcap-tiny")
    if spec.startswith(HUB_PREFIX):
        repo = spec[len(HUB_PREFIX) :].strip()
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise InputError(f"bad hub spec {raw!r}; use hf-hub:ORG/REPO")
        return EncoderSpec(raw=raw, kind="hub", name=repo)
    path = Path(spec).expanduser()
    if path.exists():
        return _parse_path(raw, path)
    name, _, tag = spec.partition(":")
    if _looks_like_path(spec) and not tag:
        raise InputError(
            f"encoder file {spec} does not exist; pass an existing path or a model name"
        )
    name = name.replace("/", "-")  # open_clip accepts ViT-B/16 for ViT-B-16
    valid = builtin_names()
    if name not in valid:
        raise InputError(
            f"unknown encoder {name!r}; valid names: {', '.join(valid)} "
            "(or hf-hub:ORG/REPO, a checkpoint .pt, an architecture .json)"
        )
    if not tag:
        return EncoderSpec(raw=raw, kind="builtin", name=name)
    if Path(tag).expanduser().is_file():
        return EncoderSpec(raw=raw, kind="builtin", name=name, tag=str(Path(tag).expanduser()))
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(name)
    if tag not in tags:
        known = ", ".join(tags) if tags else "none"
        raise InputError(
            f"unknown pretrained tag {tag!r} for {name}; known tags: {known} "
            "(or NAME:path/to/weights.pt)"
        )
    return EncoderSpec(raw=raw, kind="builtin", name=name, tag=tag)
