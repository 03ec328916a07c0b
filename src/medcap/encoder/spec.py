"""Parse an encoder spec string: the one place that knows the spec forms.

Forms (checked in this order):

- `hf-hub:org/repo`               an open_clip model on the Hugging Face hub; a snapshot
                                  when the active bundle (`MEDCAP_BUNDLE`) holds that repo
- an existing directory           an open_clip snapshot (`open_clip_config.json` + weights),
                                  or a `medcap train` output dir, meaning `DIR/best.pt`
- an existing `*.pt`/`*.bin`/...  a checkpoint with a JSON sidecar (`best.pt` -> `best.json`),
                                  or the weights file of an open_clip snapshot
- an existing `*.json`            an open_clip architecture config (random init), or a sidecar
- `NAME` or `NAME:TAG`            a built-in architecture (`open_clip.list_models()` plus
                                  `medcap-tiny`), with an optional pretrained tag or weights file
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeGuard

from medcap.errors import CorruptArtifactError, InputError
from medcap.snapshots.bundle import bundle_model_dir

SpecKind = Literal["builtin", "hub", "checkpoint", "arch_json", "snapshot"]

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
SIDECAR_FORMAT = "medcap-checkpoint"  # the `format` key of every sidecar medcap writes
HUB_PREFIX = "hf-hub:"
BEST_CHECKPOINT = "best.pt"
# An open_clip snapshot folder, as on the hub (BiomedCLIP's repository): its config, and the
# weights file open_clip looks for first.
SNAPSHOT_CONFIG = "open_clip_config.json"
SNAPSHOT_WEIGHTS = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
)


@dataclass(frozen=True)
class EncoderSpec:
    """A parsed spec. `name` is the architecture name, the hub id, or the file path."""

    raw: str
    kind: SpecKind
    name: str
    tag: str | None = None  # pretrained tag or weights file (builtin only)
    path: Path | None = None  # checkpoint, architecture file, or a snapshot's weights file

    @property
    def sidecar(self) -> Path | None:
        """The JSON sidecar of a checkpoint spec."""
        return sidecar_path(self.path) if self.kind == "checkpoint" and self.path else None

    @property
    def snapshot_dir(self) -> Path | None:
        """The folder of a snapshot spec (holding open_clip_config.json)."""
        return self.path.parent if self.kind == "snapshot" and self.path else None

    @property
    def identity_files(self) -> tuple[Path, ...]:
        """The files whose bytes fix this spec's weights and architecture (keys of cached
        fingerprints): a checkpoint; a snapshot's weights and config; () for the others."""
        if self.kind == "checkpoint" and self.path:
            return (self.path,)
        if self.kind == "snapshot" and self.path:
            return (self.path, self.path.parent / SNAPSHOT_CONFIG)
        return ()

    @property
    def recorded(self) -> str:
        """The spec as indexes and runs record it: local files and folders by absolute path
        (valid from any working directory), names and hub ids (a bundle's too) as given."""
        if self.kind == "checkpoint" and self.path:
            return str(self.path.resolve())
        if self.kind == "snapshot" and not self.raw.strip().startswith(HUB_PREFIX):
            return str(Path(self.raw.strip()).expanduser().resolve())
        return self.raw


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


def is_arch_config(cfg: Any) -> TypeGuard[dict[str, Any]]:
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


def snapshot_spec(raw: str, folder: Path, *, name: str, weights: Path | None = None) -> EncoderSpec:
    """The spec of the open_clip snapshot in `folder` (its first weights file by default)."""
    if weights is None:
        found = [folder / n for n in SNAPSHOT_WEIGHTS if (folder / n).is_file()]
        if not found:
            raise InputError(
                f"{folder} has {SNAPSHOT_CONFIG} but no weights ({' or '.join(SNAPSHOT_WEIGHTS)}); "
                "copy the weights file into it too"
            )
        weights = found[0]
    return EncoderSpec(raw=raw, kind="snapshot", name=name, path=weights)


def _parse_path(raw: str, path: Path) -> EncoderSpec:
    if path.is_dir():
        if (path / SNAPSHOT_CONFIG).is_file():
            return snapshot_spec(raw, path, name=str(path))
        best = path / BEST_CHECKPOINT
        if not best.is_file():
            raise InputError(
                f"{path} is neither an open_clip snapshot (no {SNAPSHOT_CONFIG}) nor a "
                f"`medcap train` output (no {BEST_CHECKPOINT}); pass one of those folders "
                "or a checkpoint file"
            )
        path = best
    if path.suffix in CHECKPOINT_SUFFIXES:
        sidecar = sidecar_path(path)
        if sidecar.is_file():
            return EncoderSpec(raw=raw, kind="checkpoint", name=str(path), path=path)
        if (path.parent / SNAPSHOT_CONFIG).is_file():
            return snapshot_spec(raw, path.parent, name=str(path.parent), weights=path)
        raise InputError(
            f"checkpoint {path} has no sidecar {sidecar.name} and no {SNAPSHOT_CONFIG} beside "
            f"it; pass a checkpoint written by `medcap train`, an open_clip snapshot folder, "
            f"or NAME:{path} to load open_clip weights into architecture NAME"
        )
    if path.suffix == ".json":
        if path.name == SNAPSHOT_CONFIG and any(
            (path.parent / n).is_file() for n in SNAPSHOT_WEIGHTS
        ):
            return snapshot_spec(raw, path.parent, name=str(path.parent))
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
        bundled = bundle_model_dir(repo)
        if bundled is None:
            return EncoderSpec(raw=raw, kind="hub", name=repo)
        if not (bundled / SNAPSHOT_CONFIG).is_file():
            raise CorruptArtifactError(
                f"{bundled}: the bundle's copy of {repo} has no {SNAPSHOT_CONFIG}; "
                "run `medcap fetch --verify` on the bundle and fetch it again"
            )
        return snapshot_spec(raw, bundled, name=repo)
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
