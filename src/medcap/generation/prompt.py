"""Prompts for retrieval-augmented captioning: neighbour captions poured into a template file.

Templates are plain text files in `generation/templates/` (selected by name, e.g. `default`,
`smallcap`, `concise`) or any `.txt` path. They may use these placeholders:

- `{captions}`: the neighbour captions, one per line, each starting with "- ";
- `{captions_inline}`: the same captions as sentences on one line (SmallCap's style);
- `{hint}`: "Imaging modality: CT." when a modality hint is given, else nothing;
- `{k}`: the number of neighbour captions in the prompt.

A line that held only placeholders which came out empty is dropped.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from medcap.errors import InputError
from medcap.types import Hit

TEMPLATE_DIR = Path(__file__).parent / "templates"
PLACEHOLDERS = frozenset({"captions", "captions_inline", "hint", "k"})


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt with the neighbours it was built from (provenance)."""

    text: str
    template: str
    neighbour_ids: tuple[str, ...] = ()
    neighbour_captions: tuple[str, ...] = ()
    neighbour_scores: tuple[float, ...] = ()  # cosine similarity of each neighbour to the query

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Chat form for vision-language models: one user turn with the image, then the text."""
        return [
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "text", "text": self.text}],
            }
        ]


def list_templates() -> list[str]:
    """Names of the built-in templates."""
    return sorted(p.stem for p in TEMPLATE_DIR.glob("*.txt"))


def load_template(template: str) -> str:
    """Read a template by built-in name or from a `.txt` path; check its placeholders."""
    path = TEMPLATE_DIR / f"{template}.txt"
    if not path.exists():
        path = Path(template)
        if path.suffix != ".txt" or not path.is_file():
            raise InputError(
                f"unknown prompt template {template!r}; use one of {', '.join(list_templates())} "
                "or a path to a .txt file"
            )
    return _parse_template(str(path), path.stat().st_mtime_ns)


@cache
def _parse_template(path: str, mtime_ns: int) -> str:
    """Template text, read once per file version (`mtime_ns` is part of the cache key)."""
    text = Path(path).read_text(encoding="utf-8").strip("\n")
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        raise InputError(
            f"prompt template {path}: bad braces ({exc}); write literal braces as {{{{ }}}}"
        ) from None
    unknown = sorted(fields - PLACEHOLDERS)
    if unknown:
        raise InputError(
            f"prompt template {path}: unknown placeholders {unknown}; "
            f"allowed: {sorted(PLACEHOLDERS)}"
        )
    return text


def clean_caption(caption: str) -> str:
    """One line of text: newlines and runs of spaces collapsed."""
    return " ".join(caption.split())


def _as_sentence(caption: str) -> str:
    return caption if caption.endswith((".", "!", "?")) else caption + "."


def _unique(captions: Sequence[str]) -> list[str]:
    # ROCOv2 repeats captions; a repeated line in a prompt only costs tokens.
    seen: set[str] = set()
    out: list[str] = []
    for caption in captions:
        if caption and caption.lower() not in seen:
            seen.add(caption.lower())
            out.append(caption)
    return out


def render_template(
    template: str, captions: Sequence[str], modality_hint: str | None = None
) -> str:
    """Fill a template with neighbour captions (in rank order) and an optional modality hint."""
    source = load_template(template)
    shown = _unique([clean_caption(c) for c in captions])
    hint = (
        f"Imaging modality: {modality_hint.strip()}."
        if modality_hint and modality_hint.strip()
        else ""
    )
    values = {
        "captions": "\n".join(f"- {c}" for c in shown),
        "captions_inline": " ".join(_as_sentence(c) for c in shown),
        "hint": hint,
        "k": str(len(shown)),
    }
    lines = []
    for line in source.splitlines():
        rendered = re.sub(r" {2,}", " ", line.format_map(values)).strip()
        if rendered or not line.strip():
            lines.append(rendered)
    return "\n".join(lines)


def build_prompt(
    hits: Sequence[Hit], *, template: str = "default", k: int, modality_hint: str | None = None
) -> Prompt:
    """Build the prompt for one query from its top-`k` neighbours (hits in rank order).

    Example:
        >>> hits = [Hit(rank=1, score=0.9, image_id="a", caption="CT of the chest.")]
        >>> build_prompt(hits, template="smallcap", k=4).text
        'Similar images show CT of the chest. This image shows'
    """
    if k < 1:
        raise InputError(f"k must be >= 1, got {k}")
    top = sorted(hits, key=lambda h: h.rank)[:k]
    captions = [clean_caption(h.caption) for h in top]
    return Prompt(
        text=render_template(template, captions, modality_hint),
        template=template,
        neighbour_ids=tuple(h.image_id for h in top),
        neighbour_captions=tuple(captions),
        neighbour_scores=tuple(float(h.score) for h in top),
    )
