"""Caption many images into a results CSV that survives interruption.

Rows are appended in checkpoints (every `GenerationConfig.checkpoint_every` images, and on any
exception) with one write, a flush and an fsync each. A rerun reads the image_ids already in
the file, repairs a last line cut short by a hard kill, and captions only what is missing, so
every image ends up in the file exactly once. The CSV feeds `medcap eval captions`.

`caption_split` records the run's identity (data, split, index, backend, model, adapter,
template, k, limit, search mode and the other settings that change captions) in
`<out>.run.json` before the first row, and resumes only a run with the same identity: a
rerun with other settings is refused naming the setting (`overwrite` starts over). The one
exception is a larger `limit` (or none), which extends the run: the images already
captioned are the first ones of the longer run too. The CSV's lock (medcap.locking) keeps a
second process out while the run writes.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from itertools import islice
from pathlib import Path

from medcap.atomic import write_json_atomic
from medcap.clock import now_iso
from medcap.config import DEFAULTS, DataConfig, GenerationConfig, current
from medcap.errors import InputError
from medcap.generation.backends.base import CaptionBackend
from medcap.generation.captioning import (
    CaptionFn,
    NeighbourSearch,
    generator_model,
    template_of,
)
from medcap.generation.prompt import clean_caption
from medcap.index.manifest import index_fingerprint, read_manifest
from medcap.locking import output_lock
from medcap.runs.caption_engine import BatchMapper, CaptionEngine, Captioner, LocalCaptionEngine
from medcap.runs.caption_engine import BatchRun as BatchRun  # its home before engines
from medcap.runs.identity import (
    Identity,
    as_json,
    folder_checksum,
    read_identity,
    refuse_difference,
)
from medcap.types import Caption, Record, Skipped

log = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = (
    "image_id",
    "original_caption",
    "generated_caption",
    "neighbour_ids",
    "neighbour_scores",
    "backend",
    "model",
    "processing_time_sec",
    "timestamp",
    "split",
)
LIST_SEPARATOR = ";"  # inside the neighbour_ids and neighbour_scores cells


# Maps a batch of records to one Caption (or a Skipped, e.g. an unreadable image) per record.
@dataclass
class RunSummary:
    """What a batch captioning run did."""

    out_path: Path
    written: int = 0  # rows added by this run
    resumed: int = 0  # rows that were already in the file
    skipped: list[Skipped] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def images_per_s(self) -> float:
        """Throughput of this run over the rows it wrote."""
        return self.written / self.elapsed_s if self.elapsed_s > 0 else 0.0


def format_row(record: Record, caption: Caption, split: str) -> list[str]:
    """One CSV row (captions kept on one line; scores with 4 decimals)."""
    return [
        record.image_id,
        clean_caption(record.caption),
        clean_caption(caption.text),
        LIST_SEPARATOR.join(caption.neighbour_ids),
        LIST_SEPARATOR.join(f"{s:.4f}" for s in caption.neighbour_scores),
        caption.backend,
        caption.model,
        f"{caption.latency_s:.4f}",
        now_iso(),
        split,
    ]


def _repair_tail(path: Path) -> None:
    """Cut a last line that a hard kill left without its newline."""
    with path.open("rb+") as handle:
        data = handle.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            log.warning(
                "%s: dropping an incomplete last line (%d bytes) before resuming",
                path,
                len(data) - end,
            )
            handle.truncate(end)


def read_done_ids(path: str | Path) -> set[str]:
    """image_ids already in a results CSV (after repairing a truncated last line)."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return set()
    _repair_tail(path)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return set()
        if tuple(header) != COLUMNS:
            raise InputError(
                f"{path} exists but is not a medcap results file (columns {header[:4]}...); "
                "pass another --out or --overwrite"
            )
        return {row[0] for row in reader if len(row) == len(COLUMNS)}


class _CsvAppender:
    """Appends rows to the results file, each checkpoint as one write + fsync."""

    def __init__(self, path: Path, fresh: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = path.open("w" if fresh else "a", newline="", encoding="utf-8")
        self.pending: list[list[str]] = []
        if fresh or path.stat().st_size == 0:
            self._write([list(COLUMNS)])

    def _write(self, rows: list[list[str]]) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        self.handle.write(buffer.getvalue())
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def add(self, row: list[str]) -> None:
        self.pending.append(row)

    def flush(self) -> int:
        count = len(self.pending)
        if count:
            self._write(self.pending)
            self.pending = []
        return count

    def close(self) -> None:
        self.flush()
        self.handle.close()


def _batches(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    iterator = iter(records)
    while batch := list(islice(iterator, size)):
        yield batch


def caption_dataset(
    records: Iterable[Record],
    caption_fn: CaptionFn | None,
    out_path: str | Path,
    *,
    split: str,
    cfg: GenerationConfig = DEFAULTS.generation,
    limit: int | None = None,
    total: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    mapper: BatchMapper | None = None,
) -> RunSummary:
    """Caption `records` (the first `limit` of them) into `out_path`, resuming a partial file.

    `caption_fn` gets batches of `cfg.batch_size` records and returns one Caption or Skipped
    for each. `total` (the number of records, when known) sizes the progress bar. `mapper`
    (a `Captioner.map`, e.g. of a cluster; `caption_fn` may then be None) captions the
    batches instead, several at once, yielding each batch with its results in order.

    Example:
        >>> summary = caption_dataset(dataset.records("test"), make_caption_fn(...), "results.csv",
        ...                           split="test", limit=100)
    """
    from tqdm.auto import tqdm

    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1 (got {limit}); leave it out to caption all")
    out = Path(out_path)
    done = set() if overwrite else read_done_ids(out)
    summary = RunSummary(out_path=out)
    if limit is not None:
        records = islice(records, limit)
        total = min(total, limit) if total is not None else limit
    seen: set[str] = set()

    def todo() -> Iterator[Record]:
        for record in records:
            if record.image_id in seen:
                reason = "duplicate image_id"
                summary.skipped.append(Skipped(str(out), None, record.image_id, reason))
                continue
            seen.add(record.image_id)
            if record.image_id in done:
                summary.resumed += 1
            else:
                yield record

    remaining = max(0, total - len(done)) if total is not None else None
    writer = _CsvAppender(out, fresh=overwrite or not done)
    bar = tqdm(
        total=remaining, unit="img", desc=f"caption {split}", disable=None if progress else True
    )
    start = time.perf_counter()
    try:
        batches = _batches(todo(), cfg.batch_size)
        if mapper is not None:
            mapped = mapper(batches)
        elif caption_fn is not None:
            mapped = ((b, caption_fn(b)) for b in batches)
        else:
            raise ValueError("caption_dataset needs a caption_fn or a mapper")
        for batch, results in mapped:
            if len(results) != len(batch):
                raise RuntimeError(
                    f"caption function returned {len(results)} results for {len(batch)} records"
                )
            for record, result in zip(batch, results, strict=True):
                if isinstance(result, Skipped):
                    summary.skipped.append(result)
                else:
                    writer.add(format_row(record, result, split))
            if len(writer.pending) >= cfg.checkpoint_every:
                summary.written += writer.flush()
            bar.update(len(batch))
            bar.set_postfix(skipped=len(summary.skipped), refresh=False)
    finally:
        # Rows finished before an interruption are kept; the rerun starts after them.
        summary.written += len(writer.pending)
        writer.close()
        bar.close()
        summary.elapsed_s = time.perf_counter() - start
    log.debug(  # the caller reports the summary (the CLI prints it once, to stdout)
        "%s: %d rows written, %d already there, %d skipped (%.2f images/s)",
        out,
        summary.written,
        summary.resumed,
        len(summary.skipped),
        summary.images_per_s,
    )
    return summary


def caption_split(
    run: BatchRun,
    cfg: GenerationConfig = DEFAULTS.generation,
    *,
    model_id: str | None = None,
    adapter: str | Path | None = None,
    limit: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    retriever: NeighbourSearch | None = None,
    backend: CaptionBackend | None = None,
    verify: bool | None = None,
    data_cfg: DataConfig | None = None,
    engine: CaptionEngine | None = None,
) -> RunSummary:
    """Caption one split of a dataset into a results CSV (resumable) plus `<out>.run.json`.

    `cfg.k` beyond the index size is clamped to it (with a logged note), as search does.
    `verify` checks the index files' checksums (default: IndexConfig.verify); `data_cfg`
    says how `run.data` is read (default: the active config's DataConfig). `engine`
    captions the batches (default: this process, with `retriever` and `backend` when
    given; `medcap.dist.RayCaptionEngine`: an actor pool on a Ray cluster); the rows, the
    resume and the run identity do not depend on it.
    """
    from medcap.data.readers import open_dataset

    out = Path(run.out)
    with output_lock(out):
        dataset = open_dataset(run.data, cfg=data_cfg or current().data)
        if run.split not in dataset.splits():
            raise InputError(
                f"{run.data} has no split {run.split!r}; it has {', '.join(dataset.splits())}"
            )
        cfg = _clamp_k(cfg, read_manifest(Path(run.index_dir), verify=False).count)
        cfg = replace(cfg, template=template_of(cfg))  # the run names the template it used
        identity = run_identity(run, cfg, dataset.fingerprint(), model_id, adapter, limit)
        _check_resumable(out, identity, overwrite=overwrite)
        run_file = run_file_of(out)
        write_json_atomic(
            run_file, {"identity": identity, "run": asdict(run), "started_at": now_iso()}
        )
        engine = engine or LocalCaptionEngine(retriever, backend)
        with engine.open(run, cfg, model_id=model_id, adapter=adapter, verify=verify) as captioner:
            reader = dataset.deferred() if captioner.defers_images else dataset
            summary = caption_dataset(
                reader.records(run.split),
                None,
                out,
                split=run.split,
                cfg=cfg,
                limit=limit,
                total=dataset.count(run.split),
                overwrite=overwrite,
                progress=progress,
                mapper=captioner.map,
            )
            summary.skipped.extend(dataset.skipped)
            _write_run_info(run_file, run, identity, cfg, captioner, summary)
    return summary


def run_file_of(out: Path) -> Path:
    """`<out>.run.json`: the run's identity and summary beside its results CSV."""
    return out.with_suffix(".run.json")


def _clamp_k(cfg: GenerationConfig, index_count: int) -> GenerationConfig:
    if 0 < index_count < cfg.k:
        log.warning("note: k=%d is larger than the index (%d cases); using %d", cfg.k,
                    index_count, index_count)  # fmt: skip
        return replace(cfg, k=index_count)
    return cfg


def run_identity(
    run: BatchRun,
    cfg: GenerationConfig,
    data_fingerprint: str,
    model_id: str | None,
    adapter: str | Path | None,
    limit: int | None,
) -> Identity:
    """Everything the rows of a captioning run depend on (see the module docstring)."""
    adapter_path = Path(adapter).resolve() if adapter else None
    return as_json(
        {
            "data_fingerprint": data_fingerprint,
            "split": run.split,
            "index_fingerprint": index_fingerprint(Path(run.index_dir)),
            "backend": cfg.backend,
            "model": generator_model(cfg, model_id),
            "adapter": f"{adapter_path} {folder_checksum(adapter_path)}" if adapter_path else None,
            "template": cfg.template,
            "k": (
                f"auto {cfg.auto_k_min}..{cfg.auto_k_max} x{cfg.auto_k_gap_ratio:g}"
                if cfg.auto_k
                else cfg.k
            ),
            "limit": limit,
            "search_mode": cfg.search_mode,
            "modality_hint": cfg.modality_hint,
            "max_new_tokens": cfg.max_new_tokens,
            "num_beams": cfg.num_beams,
            "consensus_similarity": cfg.consensus_similarity,
        }
    )


def _check_resumable(out: Path, identity: Identity, *, overwrite: bool) -> None:
    """Refuse to resume `out` unless its run file records the same identity."""
    if overwrite or not read_done_ids(out):
        return  # nothing captioned yet (or starting over): nothing to mix with
    run_file = run_file_of(out)
    fix = "pass --overwrite to start over, or choose another --out"
    if not run_file.exists():
        raise InputError(
            f"{out} exists without its run file {run_file.name}, so it is not a medcap run "
            f"that can be resumed; {fix}"
        )
    recorded = read_identity(run_file, str(out))
    fix = f"rerun with the same settings, {fix}"
    refuse_difference(recorded, identity, out, fix, ignore=("limit",))
    old, new = recorded.get("limit"), identity["limit"]
    if (old is None and new is not None) or (new is not None and new < old):
        raise InputError(
            f"{out} was started with limit={old!r}, not {new!r}; a rerun may only raise the "
            f"limit (or drop it); {fix}"
        )


def _write_run_info(
    path: Path,
    run: BatchRun,
    identity: Identity,
    cfg: GenerationConfig,
    captioner: Captioner,
    summary: RunSummary,
) -> Path:
    info = {
        "identity": identity,
        "run": asdict(run),
        "engine": captioner.engine,
        "backend": captioner.backend,
        "model": captioner.model,
        "generation": asdict(cfg),
        "written": summary.written,
        "resumed": summary.resumed,
        "elapsed_s": round(summary.elapsed_s, 3),
        "images_per_s": round(summary.images_per_s, 3),
        "skipped": [asdict(s) for s in summary.skipped],
        "finished_at": now_iso(),
    }
    write_json_atomic(path, info)
    return path
