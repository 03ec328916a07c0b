"""`medcap eval retrieval|captions|concepts`: evaluation runs that write report directories."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from medcap.cli.options import (
    NOT_ONE_OF,
    AllowOutsidePathsOption,
    DataOption,
    EncoderDeviceOption,
    EncodingOption,
    VerifyOption,
    choice_option,
    data_config,
    verify_setting,
)
from medcap.config import DEFAULTS, Duplicates, RankTies, SearchMode, current, replace_set

app = typer.Typer(
    help="Evaluate retrieval (Recall@K), captions (BLEU/METEOR/ROUGE/CIDEr) and concepts (F1).",
    no_args_is_help=True,
)
_RET = DEFAULTS.retrieval
_EVAL = DEFAULTS.eval


def _parse_ks(text: str | None) -> tuple[int, ...] | None:
    from medcap.errors import InputError

    if text is None:
        return None
    try:
        ks = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise InputError(
            f"--recall-ks {text!r}: give comma-separated integers like 1,5,10"
        ) from None
    if not ks or ks[0] < 1:
        raise InputError(f"--recall-ks {text!r}: every K must be >= 1")
    return ks


@app.command("retrieval")
def retrieval(
    data: DataOption,
    out: Annotated[Path, typer.Option("--out", help="Report directory to write.")],
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            help="Encoder spec or checkpoint; repeat to compare. "
            f"(default: {DEFAULTS.encoder.model})",
        ),
    ] = None,
    split: Annotated[
        str | None, typer.Option(help=f"Split to evaluate. (default: {_EVAL.split})")
    ] = None,
    sample_pairs: Annotated[
        int | None,
        typer.Option(
            help="Evaluate this many pairs drawn from the split (e.g. 2000). (default: whole split)"
        ),
    ] = None,
    sample_seed: Annotated[
        int | None, typer.Option(help=f"Seed of the pair sample. (default: {_RET.sample_seed})")
    ] = None,
    same_caption_relevant: Annotated[
        bool | None,
        typer.Option(
            "--same-caption-relevant/--paired-only",
            help="Count every case with an identical caption as a hit. "
            f"(default: {_RET.same_caption_relevant})",
        ),
    ] = None,
    rank_ties: Annotated[
        RankTies | None,
        choice_option(
            RankTies,
            "--rank-ties",
            f"pessimistic | optimistic. (default: {_RET.rank_ties})",
            NOT_ONE_OF,
        ),
    ] = None,
    recall_ks: Annotated[
        str | None,
        typer.Option(
            help=f"Comma-separated K values. (default: {','.join(map(str, _RET.recall_ks))})"
        ),
    ] = None,
    group_by: Annotated[
        str | None, typer.Option(help="Break results down by this metadata column, e.g. modality.")
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(help=f"Encoder batch size. (default: {DEFAULTS.encoder.batch_size})"),
    ] = None,
    device: EncoderDeviceOption = None,
    allow_outside_paths: AllowOutsidePathsOption = False,
    encoding: EncodingOption = None,
) -> None:
    """Image->text and text->image Recall@K, median and mean rank of one or more encoders."""
    from medcap.evaluation.report import load_report
    from medcap.evaluation.report_tables import retrieval_table
    from medcap.runs.evaluate import run_retrieval_evaluation

    active = current()
    cfg = replace_set(
        active.retrieval,
        sample_pairs=sample_pairs,
        sample_seed=sample_seed,
        same_caption_relevant=same_caption_relevant,
        rank_ties=rank_ties,
        recall_ks=_parse_ks(recall_ks),
    )
    path = run_retrieval_evaluation(
        data,
        model or [active.encoder.model],
        out,
        split=split or active.eval.split,
        cfg=cfg,
        eval_cfg=active.eval,
        group_by=group_by,
        device=device or active.encoder.device,
        batch_size=batch_size,
        progress=sys.stderr.isatty(),
        data_cfg=data_config(allow_outside_paths=allow_outside_paths, encoding=encoding),
    )
    report = load_report(path)
    typer.echo(retrieval_table(report["encoders"], cfg.recall_ks))
    typer.echo(f"report: {path.parent / 'report.md'}")


@app.command("captions")
def captions(
    results: Annotated[Path, typer.Argument(help="Results CSV/parquet from `medcap caption`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the scores as JSON.")] = False,
    imageclef: Annotated[
        bool | None,
        typer.Option(
            "--imageclef/--coco",
            help="ImageCLEFmedical preprocessing (+ ROUGE-1). "
            f"(default: {'imageclef' if _EVAL.imageclef_preprocess else 'coco'})",
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Encoder spec for CLIPScore/RefCLIPScore (needs --data).")
    ] = None,
    data: Annotated[
        str | None, typer.Option(help="Dataset holding the results' images (for CLIPScore).")
    ] = None,
    meteor: Annotated[
        bool | None,
        typer.Option("--meteor/--no-meteor", help=f"Run METEOR (Java). (default: {_EVAL.meteor})"),
    ] = None,
    bertscore: Annotated[
        bool, typer.Option("--bertscore/--no-bertscore", help="Try BERTScore.")
    ] = True,
    bertscore_model: Annotated[
        str | None, typer.Option(help=f"Local BERTScore model. (default: {_EVAL.bertscore_model})")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Also write a report directory here.")] = None,
    device: EncoderDeviceOption = None,
    duplicates: Annotated[
        Duplicates | None,
        choice_option(
            Duplicates,
            "--duplicates",
            "Image ids with several rows: error, or mean (average each image's rows, so every "
            f"image counts once). (default: {_EVAL.duplicates})",
            NOT_ONE_OF,
        ),
    ] = None,
    allow_outside_paths: AllowOutsidePathsOption = False,
    encoding: EncodingOption = None,
) -> None:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr (COCO definitions), BERTScore, CLIPScore."""
    from medcap.evaluation.caption_metrics import duplicates_note
    from medcap.runs.evaluate import run_caption_evaluation

    active = current()
    cfg = replace_set(
        active.eval,
        imageclef_preprocess=imageclef,
        meteor=meteor,
        bertscore_model=bertscore_model,
        duplicates=duplicates,
    )
    scores = run_caption_evaluation(
        results,
        cfg,
        model=model,
        data=data,
        bertscore=bertscore,
        device=device,
        data_cfg=data_config(allow_outside_paths=allow_outside_paths, encoding=encoding),
    )
    report = scores.report
    if out is not None:
        scores.write(out)
    if as_json:
        keys = ("n", "rows", "duplicates", "metrics", "unavailable", "clipscore", "config")
        typer.echo(json.dumps({k: report[k] for k in keys}, indent=1))
    else:
        typer.echo(f"{report['n']} captions from {results}")
        typer.echo(duplicates_note(report))
        for name, value in report["metrics"].items():
            typer.echo(f"{name:<14}{value:.4f}")
        for name, reason in report["unavailable"].items():
            typer.echo(f"{name:<14}unavailable: {reason}")
        if report["skipped"]:
            typer.echo(f"skipped {len(report['skipped'])} row(s); see the report for the list")
    if out is not None:
        typer.echo(f"report: {out / 'report.md'}")


@app.command("concepts")
def concepts(
    index: Annotated[Path, typer.Option("--index", help="Index directory whose cases vote.")],
    data: DataOption,
    out: Annotated[Path, typer.Option("--out", help="Report directory to write.")],
    split: Annotated[
        str | None, typer.Option(help=f"Query split. (default: {_EVAL.split})")
    ] = None,
    k: Annotated[
        int | None, typer.Option("--k", help=f"Voting neighbours. (default: {_EVAL.concept_k})")
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            help=f"Share of the vote a concept needs. (default: {_EVAL.concept_threshold})"
        ),
    ] = None,
    mode: Annotated[
        SearchMode | None,
        choice_option(
            SearchMode,
            "--mode",
            f"Neighbours by images | captions search. (default: {_EVAL.concept_mode})",
            NOT_ONE_OF,
        ),
    ] = None,
    device: EncoderDeviceOption = None,
    verify: VerifyOption = None,
    allow_outside_paths: AllowOutsidePathsOption = False,
    encoding: EncodingOption = None,
) -> None:
    """Concept (CUI) detection by neighbour voting; sample-averaged F1 as ImageCLEFmedical."""
    from medcap.evaluation.report import load_report
    from medcap.runs.evaluate import run_concept_evaluation

    active = current()
    cfg = replace_set(active.eval, concept_k=k, concept_threshold=threshold, concept_mode=mode)
    path = run_concept_evaluation(
        index,
        data,
        out,
        split=split or active.eval.split,
        cfg=cfg,
        device=device or active.encoder.device,
        verify=verify_setting(verify),
        data_cfg=data_config(allow_outside_paths=allow_outside_paths, encoding=encoding),
    )
    report = load_report(path)
    typer.echo(
        f"concept F1 {report['f1']:.4f} over {report['n']} queries "
        f"(k={report['config']['k_used']}, threshold={cfg.concept_threshold:g})"
    )
    typer.echo(f"report: {path.parent / 'report.md'}")
