"""BERTScore F1 (ImageCLEFmedical 2023 settings: caption by caption, no idf, no rescaling).

Runs only with the `bert_score` package and a model that is already on this machine (a
local directory, or a Hugging Face cache entry): nothing is downloaded. Otherwise
`bertscore_unavailable_reason` says what is missing and no number is reported.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path


def _local_model_dir(model: str) -> Path | None:
    """The directory holding `model` on this machine, or None when it is not here."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path if (path / "config.json").exists() else None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(repo_id=model, filename="config.json")
    except ValueError:  # not a valid repo id
        return None
    return Path(found).parent if isinstance(found, str) else None


def bertscore_unavailable_reason(model: str) -> str | None:
    """None when BERTScore can run with `model` here, else a one-line reason with the fix."""
    if importlib.util.find_spec("bert_score") is None:
        return "BERTScore needs the bert_score package: pip install 'medcap[eval]'"
    if _local_model_dir(model) is None:
        return (
            f"BERTScore model {model!r} is not on this machine (nothing is downloaded); "
            "pass a local model directory with --bertscore-model or pre-fetch it into the HF cache"
        )
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

    local = _local_model_dir(model)
    if local is None:
        raise RuntimeError(bertscore_unavailable_reason(model) or "BERTScore model not found")
    if num_layers is None:
        num_layers = bert_score.utils.model2layers.get(model)
        if num_layers is None:
            raise RuntimeError(
                f"BERTScore does not know how many layers of {model!r} to use; "
                "set eval.bertscore_num_layers"
            )
    if not candidates:
        return 0.0, []
    _, _, f1 = bert_score.score(
        list(candidates),
        [list(refs) for refs in references],
        model_type=str(local),
        num_layers=num_layers,
        batch_size=batch_size,
        device=device,
        idf=False,
        rescale_with_baseline=False,
    )
    scores = [float(x) for x in f1.tolist()]
    return sum(scores) / len(scores), scores
