"""Batch captioning into a results CSV: checkpoints, interruption, resume, duplicates."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from medcap.config import DEFAULTS
from medcap.errors import InputError
from medcap.runs.caption import COLUMNS, caption_dataset, read_done_ids
from medcap.types import Caption, ImageRef, Record, Skipped

CFG = replace(DEFAULTS.generation, batch_size=4, checkpoint_every=5)


def _records(n: int, prefix: str = "img") -> list[Record]:
    return [
        Record(
            image_id=f"{prefix}{i:03d}",
            image=ImageRef(path=f"{i}.png"),
            caption=f"truth, {i}\nline two",
            split="test",
        )
        for i in range(n)
    ]


class Captioner:
    """A deterministic caption function that can be told to fail after N images."""

    def __init__(
        self, fail_after: int | None = None, unreadable: frozenset[str] = frozenset()
    ) -> None:
        self.fail_after = fail_after
        self.unreadable = unreadable
        self.seen: list[str] = []

    def __call__(self, records: Sequence[Record]) -> list[Caption | Skipped]:
        if self.fail_after is not None and len(self.seen) + len(records) > self.fail_after:
            raise RuntimeError("injected failure")
        out: list[Caption | Skipped] = []
        for r in records:
            self.seen.append(r.image_id)
            if r.image_id in self.unreadable:
                out.append(Skipped(r.image.describe(), None, r.image_id, "cannot decode"))
                continue
            out.append(
                Caption(
                    text=f"caption of {r.image_id}, with a comma",
                    backend="test",
                    model="m",
                    latency_s=0.01,
                    neighbour_ids=(f"n-{r.image_id}", "other"),
                    neighbour_scores=(0.9, 0.81234),
                )
            )
        return out


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_rows_have_the_documented_columns(tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    summary = caption_dataset(_records(7), Captioner(), out, split="test", cfg=CFG, progress=False)
    assert summary.written == 7 and summary.resumed == 0
    rows = _rows(out)
    assert tuple(rows[0]) == COLUMNS
    first = rows[0]
    assert first["image_id"] == "img000"
    assert first["original_caption"] == "truth, 0 line two"  # one line per row
    assert first["generated_caption"] == "caption of img000, with a comma"
    assert first["neighbour_ids"] == "n-img000;other"
    assert first["neighbour_scores"] == "0.9000;0.8123"
    assert first["backend"] == "test" and first["model"] == "m" and first["split"] == "test"
    assert float(first["processing_time_sec"]) == pytest.approx(0.01)
    assert first["timestamp"].endswith("+00:00")


def test_rows_are_flushed_at_each_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    sizes: list[int] = []
    captioner = Captioner()

    def watching(records: Sequence[Record]) -> list[Caption | Skipped]:
        sizes.append(len(read_done_ids(out)) if out.exists() else 0)
        return captioner(records)

    caption_dataset(_records(20), watching, out, split="test", cfg=CFG, progress=False)
    # Batches of 4, checkpoints once 5 rows are pending: the file grows while the run goes.
    assert sizes == [0, 0, 8, 8, 16]
    assert len(_rows(out)) == 20


def test_interrupted_run_resumes_with_every_row_exactly_once(tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    records = _records(23)
    with pytest.raises(RuntimeError, match="injected"):
        caption_dataset(
            records, Captioner(fail_after=10), out, split="test", cfg=CFG, progress=False
        )
    done_before = read_done_ids(out)
    assert 0 < len(done_before) < 23
    rest = Captioner()
    summary = caption_dataset(records, rest, out, split="test", cfg=CFG, progress=False)
    assert summary.resumed == len(done_before)
    assert set(rest.seen).isdisjoint(done_before)  # finished images are not captioned again
    ids = [row["image_id"] for row in _rows(out)]
    assert sorted(ids) == [r.image_id for r in records]


def test_a_truncated_last_line_is_repaired(tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    records = _records(9)
    caption_dataset(records[:6], Captioner(), out, split="test", cfg=CFG, progress=False)
    data = out.read_bytes()
    out.write_bytes(data[:-25])  # a hard kill in the middle of writing the last row
    assert len(read_done_ids(out)) == 5
    caption_dataset(records, Captioner(), out, split="test", cfg=CFG, progress=False)
    ids = [row["image_id"] for row in _rows(out)]
    assert sorted(ids) == [r.image_id for r in records]
    assert all(len(row) == len(COLUMNS) and None not in row.values() for row in _rows(out))


def test_limit_duplicates_and_skipped_images(tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    records = _records(6)
    records.insert(3, records[1])  # the same image_id twice in the source
    captioner = Captioner(unreadable=frozenset({"img004"}))
    summary = caption_dataset(
        records, captioner, out, split="test", cfg=CFG, limit=6, progress=False
    )
    ids = [row["image_id"] for row in _rows(out)]
    assert ids == ["img000", "img001", "img002", "img003"]
    reasons = sorted(s.reason for s in summary.skipped)
    assert reasons == ["cannot decode", "duplicate image_id"]
    again = caption_dataset(
        records, Captioner(), out, split="test", cfg=CFG, limit=6, progress=False
    )
    assert again.written == 1 and again.resumed == 4  # only the unreadable one is retried
    fresh = caption_dataset(
        records[:2], Captioner(), out, split="test", cfg=CFG, overwrite=True, progress=False
    )
    assert fresh.written == 2 and len(_rows(out)) == 2


def test_a_foreign_csv_is_not_appended_to(tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    out.write_text("id,caption\na,b\n")
    with pytest.raises(InputError, match="not a medcap results file"):
        caption_dataset(_records(2), Captioner(), out, split="test", cfg=CFG, progress=False)
    assert out.read_text() == "id,caption\na,b\n"
