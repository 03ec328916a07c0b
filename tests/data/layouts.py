"""Write ROCOv2-shaped datasets on disk (layouts a, b, Kaggle b, c) from phantom records."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from medcap.data import iter_phantom_records
from medcap.types import Record

HF_SPLIT = {"train": "train", "valid": "validation", "test": "test"}  # names used on the Hub


def phantom_records(n: int = 24, seed: int = 3) -> list[Record]:
    """Small in-memory phantoms (48 px) to lay out in other formats."""
    return list(iter_phantom_records(n, seed=seed, image_size=48))


def roco_id(split: str, k: int) -> str:
    """An official-release style id; odd gaps like the real ones are left by callers."""
    return f"ROCOv2_2023_{split}_{k:06d}"


def write_hub_parquet(
    root: Path, records: Sequence[Record], shards: int = 2
) -> dict[str, list[Record]]:
    """Layout (a) as on the Hub: `data/{train,validation,test}-NNNNN-of-NNNNN.parquet`."""
    by_split: dict[str, list[Record]] = {}
    for r in records:
        by_split.setdefault(r.split, []).append(r)
    (root / "data").mkdir(parents=True, exist_ok=True)
    for split, rows in by_split.items():
        parts = min(shards, len(rows))
        for k in range(parts):
            chunk = rows[k::parts]
            table = pa.table(
                {
                    "image": [{"bytes": r.image.data, "path": r.image.path} for r in chunk],
                    "image_id": [r.image_id for r in chunk],
                    "caption": [r.caption for r in chunk],
                    "cui": [list(r.cuis) for r in chunk],
                }
            )
            name = f"{HF_SPLIT[split]}-{k:05d}-of-{parts:05d}.parquet"
            pq.write_table(table, root / "data" / name)
    return by_split


def write_release(
    root: Path, records: Sequence[Record], *, kaggle: bool = False
) -> dict[str, list[Record]]:
    """Layout (b): images per split folder, `{split}_captions.csv`, `{split}_concepts.csv`."""
    by_split: dict[str, list[Record]] = {}
    for r in records:
        by_split.setdefault(r.split, []).append(r)
    root.mkdir(parents=True, exist_ok=True)
    renamed: dict[str, list[Record]] = {}
    for split, rows in by_split.items():
        image_dir = root / f"{split}_images" / split if kaggle else root / split
        image_dir.mkdir(parents=True, exist_ok=True)
        out = []
        with (
            open(root / f"{split}_captions.csv", "w", newline="") as cap,
            open(root / f"{split}_concepts.csv", "w", newline="") as con,
        ):
            caps, cons = csv.writer(cap), csv.writer(con)
            caps.writerow(["ID", "Caption"])
            cons.writerow(["ID", "CUIs"])
            for k, r in enumerate(rows):
                image_id = roco_id(split, 2 * k + 1)  # ids with gaps, like the release
                suffix = Path(r.image.path or "x.png").suffix
                (image_dir / f"{image_id}{suffix}").write_bytes(r.image.data or b"")
                caps.writerow([image_id, r.caption])
                cons.writerow([image_id, ";".join(r.cuis)])
                out.append(Record(image_id, r.image, r.caption, r.cuis, split, r.extra))
        renamed[split] = out
    (root / "cui_mapping.csv").write_text(
        "CUI,Canonical name\nC0040405,X-Ray Computed Tomography\n"
    )
    return renamed


def write_folder_table(
    root: Path, records: Sequence[Record], *, fmt: str, columns: dict[str, str]
) -> Path:
    """Layout (c): `images/` plus one CSV or JSONL table with the given column names."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for r in records:
        name = f"images/{r.image_id}{Path(r.image.path or 'x.png').suffix}"
        (root / name).write_bytes(r.image.data or b"")
        rows.append(
            {
                columns["image"]: name,
                columns["id"]: r.image_id,
                columns["caption"]: r.caption,
                columns["cui"]: ";".join(r.cuis) if fmt == "csv" else list(r.cuis),
                columns["split"]: HF_SPLIT[r.split],
                "modality": r.extra["modality"],
            }
        )
    table = root / ("captions.csv" if fmt == "csv" else "metadata.jsonl")
    if fmt == "csv":
        with open(table, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        table.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return table
