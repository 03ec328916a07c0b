"""BERTScore F1 (ImageCLEFmedical 2023 settings: caption by caption, no idf, no rescaling).

Runs only with the `bert_score` package and a model that is already on this machine: a
local directory (`--bertscore-model DIR`), the active bundle's copy of a hub id
(`MEDCAP_BUNDLE`), or a Hugging Face cache entry; nothing is downloaded. A model that is
not here is reported as unavailable, with the reason; a local folder that is incomplete or
damaged is an error naming the file (before any metric is computed).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from medcap.errors import InputError, first_line
from medcap.snapshots.bundle import bundle_model_dir
from medcap.snapshots.folders import (
    CONFIG,
    cached_hub_folder,
    check_model_folder,
    read_json_file,
)

WHAT = "BERTScore model"


def _is_path(model: str) -> bool:
    return model.startswith(("/", ".", "~")) or Path(model).expanduser().exists()


def check_bertscore_folder(folder: Path) -> None:
    """Config, weights and tokenizer files present and intact, and an architecture that this
    transformers knows; else one line naming what is wrong."""
    config = check_model_folder(folder, WHAT)
    if importlib.util.find_spec("transformers") is None:
        return  # bertscore_unavailable_reason reports the missing package
    import transformers

    model_type = config.get("model_type")
    if model_type not in transformers.CONFIG_MAPPING:
        raise InputError(
            f"{folder / CONFIG} names an architecture this transformers "
            f"{transformers.__version__} does not know (model_type {model_type!r}); "
            "pass another --bertscore-model"
        )


def local_model_dir(model: str) -> Path | None:
    """The checked local folder of `model`, or None when it is not on this machine."""
    if _is_path(model):
        path = Path(model).expanduser()
        if not path.is_dir():
            raise InputError(
                f"{WHAT} {model} does not exist or is not a directory; pass a model folder "
                "with --bertscore-model"
            )
        check_bertscore_folder(path)
        return path
    folder = bundle_model_dir(model) or cached_hub_folder(model)
    if folder is not None:
        check_bertscore_folder(folder)
    return folder


def bertscore_unavailable_reason(model: str) -> str | None:
    """None when BERTScore can run with `model` here, else a one-line reason with the fix.

    Raises a MedcapError for a local folder that is there but incomplete or damaged.
    """
    if importlib.util.find_spec("bert_score") is None:
        return "BERTScore needs the bert_score package: pip install 'medcap[eval]'"
    if local_model_dir(model) is None:
        return (
            f"{WHAT} {model!r} is not on this machine (nothing is downloaded); pass a local "
            "model directory with --bertscore-model, a `medcap fetch` bundle (MEDCAP_BUNDLE), "
            "or pre-fetch it into the HF cache"
        )
    return None


def default_num_layers(model: str, folder: Path) -> int | None:
    """bert_score's layer for `model`, found by its hub id or by the folder's name
    (`deberta-xlarge-mnli`, or `microsoft--deberta-xlarge-mnli` as bundles name it)."""
    import bert_score

    table: dict[str, int] = bert_score.utils.model2layers
    for key, layers in table.items():
        if model == key or folder.name in (key.split("/")[-1], key.replace("/", "--")):
            return layers
    return None


def bertscore_f1(
    candidates: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    model: str,
    num_layers: int | None = None,
    batch_size: int = 16,
    device: str | None = None,
) -> tuple[float, list[float]]:
    """Mean BERTScore F1 and per-caption F1 (best reference per caption)."""
    import bert_score

    local = local_model_dir(model)
    if local is None:
        raise RuntimeError(bertscore_unavailable_reason(model) or "BERTScore model not found")
    if num_layers is None:
        num_layers = default_num_layers(model, local)
        if num_layers is None:
            raise RuntimeError(
                f"BERTScore does not know how many layers of {model!r} to use; "
                "set eval.bertscore_num_layers"
            )
    config = read_json_file(local / CONFIG, WHAT)
    depth = config.get("num_hidden_layers")
    if isinstance(depth, int) and not 0 < num_layers <= depth:
        raise InputError(
            f"BERTScore layer {num_layers} does not exist in {local} ({depth} layers); "
            "set eval.bertscore_num_layers to a layer of this model"
        )
    if not candidates:
        return 0.0, []
    # bert_score scores an empty sentence 0, but reaches it through a tokenizer method that
    # transformers 5 tokenizers no longer have: empty pairs are scored 0 here, as there.
    pairs = [
        (c, [r for r in refs if r.strip()]) for c, refs in zip(candidates, references, strict=True)
    ]
    scored = [i for i, (c, refs) in enumerate(pairs) if c.strip() and refs]
    scores = [0.0] * len(pairs)
    if not scored:
        return 0.0, scores
    try:
        scorer = bert_score.BERTScorer(
            model_type=str(local),
            num_layers=num_layers,
            batch_size=batch_size,
            device=device,
            idf=False,
            rescale_with_baseline=False,
        )
        # A tokenizer loaded from a folder whose tokenizer_config.json sets no
        # model_max_length (deberta-xlarge-mnli's) gets a huge placeholder that the fast
        # tokenizer cannot truncate to; the model's own position limit is the real one.
        positions = config.get("max_position_embeddings")
        tokenizer = scorer._tokenizer
        if isinstance(positions, int) and tokenizer.model_max_length > positions:
            tokenizer.model_max_length = positions
        _, _, f1 = scorer.score(
            [pairs[i][0] for i in scored], [pairs[i][1] for i in scored], batch_size=batch_size
        )
    except (OSError, ValueError, KeyError) as exc:  # a folder transformers cannot read
        raise InputError(
            f"{WHAT} at {local} could not be loaded ({first_line(exc, 240)})"
        ) from None
    for i, value in zip(scored, f1.tolist(), strict=True):
        scores[i] = float(value)
    return sum(scores) / len(scores), scores
