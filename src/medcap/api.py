"""The calls behind `import medcap`: one line each for a notebook, thin wrappers only.

Each joins a few library packages (or an evaluation run) the way the matching command
does, so the numbers and artifacts are the ones `medcap ...` gives. Library defaults
apply (`medcap.config.DEFAULTS`); keyword options set config fields of the stage.

>>> import medcap
>>> index = medcap.open_index("demo-out/index")
>>> index.search("scan.png", k=3, where={"modality": "CT"})[0][0].caption
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medcap.config import DEFAULTS, DistConfig, IndexConfig, replace_set
from medcap.errors import InputError

if TYPE_CHECKING:
    from medcap.data.dataset import Dataset
    from medcap.encoder import Encoder
    from medcap.generation.captioning import CaptionResult
    from medcap.retrieval.retriever import Retriever
    from medcap.runs.evaluate import CaptionScores, RetrievalEvaluation


def _section(section: Any, name: str, **options: Any) -> Any:
    """`section` with `options` (its field names) applied; a wrong name is one line."""
    known = {f.name for f in dataclasses.fields(section)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InputError(
            f"unknown {name} option(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}"
        )
    return replace_set(section, **options)


def _dataset(data: str | Path | Dataset) -> Dataset:
    from medcap.data.readers import open_dataset

    return data if hasattr(data, "records") else open_dataset(data)  # type: ignore[return-value]


def split_size(dataset: Dataset, split: str) -> int | None:
    """Cases in a split, or None when the dataset cannot count them (sizes progress bars)."""
    try:
        return int(dataset.count(split))
    except Exception:  # noqa: BLE001 - a count is only for the progress bar
        return None


def open_index(
    path: str | Path, *, device: str = "auto", model: str | None = None, verify: bool | None = None
) -> Retriever:
    """Open an index directory for search; its encoder loads at the first query.

    `device` is the encoder's ("auto", "cpu", "cuda:N"); `model` points at the encoder
    checkpoint if it moved (its weights must be the ones that built the index). Opening
    checks every file's checksum (`verify=False` skips that for a huge index) and reads
    the manifest and the items, so `len(index)`, `index.manifest`,
    `index.column("modality")` and filters are cheap.
    """
    from medcap.retrieval.retriever import open_retriever

    return open_retriever(path, device=device, model=model, lazy=True, verify=verify)


def build_index(
    data: str | Path | Dataset,
    out: str | Path,
    *,
    model: str | Encoder = DEFAULTS.encoder.model,
    split: str | None = None,
    device: str = "auto",
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    part: str = "",
    cfg: IndexConfig | None = None,
    engine: str | None = None,
    dist: DistConfig | None = None,
    **options: Any,
) -> Retriever:
    """Embed one split of a dataset with encoder `model` into the index directory `out` (the
    artifact `medcap index build` writes) and return it opened, encoder loaded.

    `options` are IndexConfig fields (index_type, batch_size, shard_size, thumbnail_size,
    memory_budget_gb, ...) applied over `cfg` (default: DEFAULTS.index; split "train").
    `part` "i/n" indexes one part of a sharded build. `engine` "ray" embeds on a Ray
    cluster (`dist.address`, else a local Ray started for the build; medcap[dist]), with
    the same shards, order and resume (default: `dist.engine`, "local").
    """
    from medcap.encoder import load_encoder
    from medcap.index import build_index as build
    from medcap.retrieval.retriever import Retriever
    from medcap.retrieval.thumbnails import thumbnailer

    dist = _section(dist or DEFAULTS.dist, "dist", engine=engine)
    cfg = _section(cfg or DEFAULTS.index, "index", split=split, **options)
    dataset = _dataset(data)
    if cfg.split not in dataset.splits():
        raise InputError(
            f"{dataset.name} has no split {cfg.split!r}; available: "
            f"{', '.join(dataset.splits()) or 'none'}"
        )
    encoder = load_encoder(model, device=device) if isinstance(model, str) else model
    with contextlib.ExitStack() as stack:
        engine_ = None
        if dist.engine == "ray":
            from medcap.dist import RayIndexEngine

            engine_ = stack.enter_context(RayIndexEngine(encoder, dist))
        index = build(
            (dataset.deferred() if engine_ else dataset).records(cfg.split),
            encoder,
            out,
            cfg,
            dataset_fingerprint=dataset.fingerprint(),
            dataset_name=dataset.name,
            split=cfg.split,
            resume=resume,
            overwrite=overwrite,
            progress=progress,
            total=split_size(dataset, cfg.split),
            make_thumbnail=thumbnailer(cfg.thumbnail_size),
            source_skipped=dataset.skipped,
            part=part,
            engine=engine_,
            kept_columns=dataset.config.keep_columns,
            pseudonym_check=getattr(dataset, "pseudonym_check", ""),
        )
    return Retriever(encoder, index)


def caption(
    index: Retriever | str | Path,
    images: Any,
    *,
    backend: str = DEFAULTS.generation.backend,
    k: int = DEFAULTS.generation.k,
    model: str | None = None,
    adapter: str | Path | None = None,
    image_ids: Sequence[str | None] | None = None,
    **options: Any,
) -> list[CaptionResult]:
    """Caption images from their nearest neighbours in `index`: one result per image.

    `images`: one or a list of image paths, PIL images or numpy arrays. `model`/`adapter`
    choose the generator's weights (backends that use a model). `image_ids` names images
    that are themselves indexed, so they are not their own neighbours. `options` are
    GenerationConfig fields (template, search_mode, modality_hint, max_new_tokens, ...).
    """
    from medcap.data.query_images import as_query_list, load_query_image
    from medcap.generation.captioning import build_backend, caption_with_evidence, resolve_settings

    retriever = index if not isinstance(index, str | Path) else open_index(index)
    cfg = _section(DEFAULTS.generation, "generation", backend=backend, k=k, **options)
    cfg = resolve_settings(cfg, adapter, backend=backend, k=k, template=options.get("template"))
    decoded = [load_query_image(image) for image in as_query_list(images)]
    ids = list(image_ids) if image_ids is not None else [None] * len(decoded)
    generator = build_backend(cfg, model_id=model, adapter=adapter)
    return caption_with_evidence(retriever, generator, decoded, ids, cfg)


def evaluate_retrieval(
    data: str | Path,
    models: str | Sequence[str] = DEFAULTS.encoder.model,
    *,
    split: str = DEFAULTS.eval.split,
    group_by: str | None = None,
    device: str = "auto",
    progress: bool = False,
    **options: Any,
) -> RetrievalEvaluation:
    """Image->text and text->image Recall@K, median and mean rank of one or more encoders
    on a split, as `medcap eval retrieval` computes them; `.write(dir)` saves the report.

    `options` are RetrievalConfig fields (sample_pairs, recall_ks, rank_ties, ...).
    """
    from medcap.runs.evaluate import evaluate_retrieval_run

    cfg = _section(DEFAULTS.retrieval, "retrieval", **options)
    specs = [models] if isinstance(models, str) else list(models)
    return evaluate_retrieval_run(
        data, specs, split=split, cfg=cfg, eval_cfg=DEFAULTS.eval, group_by=group_by,
        device=device, progress=progress,
    )  # fmt: skip


def score_captions(
    results: str | Path,
    *,
    model: str | None = None,
    data: str | Path | None = None,
    bertscore: bool = True,
    device: str = "auto",
    **options: Any,
) -> CaptionScores:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr (and BERTScore, CLIPScore when they can run) of a
    results CSV, as `medcap eval captions` computes them; `.write(dir)` saves the report.

    `options` are EvalConfig fields (imageclef_preprocess, meteor, bertscore_model, ...);
    CLIPScore needs `model` (an encoder spec) and `data` (the dataset with the images).
    """
    from medcap.runs.evaluate import run_caption_evaluation

    cfg = _section(DEFAULTS.eval, "eval", **options)
    return run_caption_evaluation(
        results, cfg, model=model, data=data, bertscore=bertscore, device=device
    )
