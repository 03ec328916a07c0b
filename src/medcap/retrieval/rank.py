"""Rank a handful of candidate captions for one image, as CLIP zero-shot classification does.

Scores are cosine similarities between the image embedding and each caption embedding;
the best comes first and equal scores keep the order the captions were given in.

>>> ranked = rank_captions("scan.png", ["CT of the chest", "MRI of the brain"], model="runs/tiny")
>>> [(r.rank, r.caption) for r in ranked]
[(1, 'CT of the chest'), (2, 'MRI of the brain')]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from medcap.config import DEFAULTS, EncoderConfig
from medcap.errors import ImageDecodeError, InputError
from medcap.types import ImageRef

if TYPE_CHECKING:
    from PIL import Image

    from medcap.encoder import Encoder

    ImageInput = str | Path | ImageRef | Image.Image


@dataclass(frozen=True)
class RankedCaption:
    """One candidate caption scored against the image; `rank` is 1-based, best first."""

    rank: int
    caption: str
    score: float  # cosine similarity in [-1, 1]
    probability: float | None  # softmax over the candidates at the model's logit scale
    position: int  # 0-based place of the caption in the candidates given


def rank_captions(
    image: ImageInput,
    captions: Sequence[str],
    *,
    model: str | Path | Encoder = DEFAULTS.encoder.model,
    device: str | None = None,
    cfg: EncoderConfig | None = None,
) -> list[RankedCaption]:
    """Score each candidate caption against `image` and return them best first.

    `image` is a file path (PNG, JPEG, DICOM, ...), a PIL image of any mode or an ImageRef.
    `model` is an encoder spec (a name, `hf-hub:...`, a checkpoint or training run folder) or
    an already loaded `Encoder`, so that many images are ranked without reloading it.
    `device` and `cfg` (EncoderConfig, default DEFAULTS.encoder; `device` wins over its
    device) apply when `model` is a spec.
    """
    texts = _checked_captions(captions)
    picture = _open_image(image)
    encoder = _resolve_encoder(model, device, cfg)
    image_vector = encoder.encode_images([picture])  # (1, d) float32, L2-normalised
    caption_vectors = encoder.encode_texts(texts)  # (n, d) float32, L2-normalised
    scores = (image_vector @ caption_vectors.T)[0]
    probabilities = _softmax(scores, encoder.logit_scale)
    order = np.argsort(-scores, kind="stable")  # stable: ties keep the input order
    return [
        RankedCaption(
            rank=rank,
            caption=texts[i],
            score=float(scores[i]),
            probability=None if probabilities is None else float(probabilities[i]),
            position=int(i),
        )
        for rank, i in enumerate(order, start=1)
    ]


def load_captions(path: str | Path) -> list[str]:
    """Candidate captions from a UTF-8 text file, one per line; blank lines are skipped."""
    source = Path(path)
    try:
        text = source.read_bytes().decode("utf-8-sig")  # -sig: a BOM is not part of line 1
    except FileNotFoundError:
        raise InputError(f"captions file {source} does not exist") from None
    except IsADirectoryError:
        raise InputError(
            f"captions file {source} is a folder; give a text file, one caption per line"
        ) from None
    except UnicodeDecodeError as exc:
        raise InputError(
            f"captions file {source} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    except OSError as exc:
        raise InputError(f"cannot read captions file {source}: {exc.strerror}") from None
    # Only real line breaks separate captions (str.splitlines would also split on \x0c, \u2028).
    lines = [line.strip() for line in re.split(r"\r\n|\r|\n", text)]
    captions = [line for line in lines if line]
    if not captions:
        raise InputError(f"captions file {source} holds no captions; write one caption per line")
    return captions


def _checked_captions(captions: Sequence[str]) -> list[str]:
    if isinstance(captions, str):
        raise InputError("captions must be a list of strings, not one string; wrap it in a list")
    texts = list(captions)
    if not texts:
        raise InputError("no candidate captions to rank; give at least one")
    for number, text in enumerate(texts, start=1):
        if not isinstance(text, str):
            raise InputError(f"candidate caption {number} is a {type(text).__name__}, not text")
        if not text.strip():
            raise InputError(f"candidate caption {number} is empty; remove it or fill it in")
    return texts


def _open_image(image: ImageInput) -> Image.Image:
    from PIL import Image

    from medcap.data.images import load_image, to_rgb

    if isinstance(image, Image.Image):
        try:
            image.load()
        except (OSError, ValueError) as exc:
            raise ImageDecodeError(f"cannot decode the image given: {exc}") from None
        return to_rgb(image)  # windows 16-bit and float images as file input would be
    if isinstance(image, ImageRef):
        return load_image(image)
    if isinstance(image, (str, Path)):
        path = Path(image)
        if path.is_dir():
            raise InputError(f"image {path} is a folder; give one image file")
        if not path.is_file():
            raise InputError(f"image file {path} does not exist; give a PNG, JPEG or DICOM file")
        return load_image(path)
    raise InputError(
        f"cannot rank captions for a {type(image).__name__}; "
        "give an image path, a PIL image or an ImageRef"
    )


def _resolve_encoder(
    model: str | Path | Encoder, device: str | None, cfg: EncoderConfig | None
) -> Encoder:
    if not isinstance(model, (str, Path)):
        if device is not None:
            raise InputError(
                "device applies only to a model spec; this encoder is already on "
                f"{model.device} (load it with load_encoder(spec, device=...) to move it)"
            )
        return model
    from medcap.encoder import load_encoder

    return load_encoder(str(model), device=device, cfg=cfg)


def _softmax(scores: NDArray[np.float32], logit_scale: float | None) -> NDArray[np.float64] | None:
    """Softmax of `logit_scale * scores` over the candidates (None without a logit scale)."""
    if logit_scale is None:
        return None
    logits = logit_scale * scores.astype(np.float64)
    weights = np.exp(logits - logits.max())
    return weights / weights.sum()  # type: ignore[no-any-return]
