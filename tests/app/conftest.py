"""App test helpers: an index to browse and AppTest instances started on it."""

from __future__ import annotations

import csv
import dataclasses
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

import medcap.app

MAIN = Path(medcap.app.__file__).with_name("main.py")
AppFactory = Callable[..., AppTest]


@pytest.fixture(scope="session")
def app_index_dir(phantom_index_dir: Path) -> Path:
    """The shared phantom index (train split of `phantom_dir`, trained medcap-tiny)."""
    return phantom_index_dir


@pytest.fixture(scope="session")
def original_png(phantom_dataset: Any) -> Callable[[str], bytes]:
    """PNG bytes of an indexed case's original image (as a user would upload it).

    The index only keeps small thumbnails of parquet-held images, so queries that must
    match a case exactly come from the dataset itself.
    """
    from medcap.data.images import load_image

    images = {r.image_id: r.image for r in phantom_dataset.records("train")}

    def get(image_id: str) -> bytes:
        return png_bytes(load_image(images[image_id]))

    return get


@pytest.fixture
def make_app(monkeypatch: pytest.MonkeyPatch) -> AppFactory:
    """AppTest on main.py as `streamlit run main.py -- --index DIR [--reports R]` starts it."""

    def make(
        index_dir: Path | None, *, timeout: float = 60, reports: tuple[Path, ...] = ()
    ) -> AppTest:
        argv = ["main.py"] if index_dir is None else ["main.py", "--index", str(index_dir)]
        argv += [arg for folder in reports for arg in ("--reports", str(folder))]
        monkeypatch.setattr(sys, "argv", argv)
        return AppTest.from_file(str(MAIN), default_timeout=timeout)

    return make


def png_bytes(image: object) -> bytes:
    """Encode a PIL image as PNG bytes (what a browser upload sends)."""
    buf = io.BytesIO()
    image.save(buf, "PNG")  # type: ignore[attr-defined]
    return buf.getvalue()


def write_caption_report(out: Path) -> Path:
    """A real captions report: score a small results CSV and write report.json/md/png."""
    from medcap.config import DEFAULTS
    from medcap.evaluation.caption_metrics import evaluate_caption_results
    from medcap.evaluation.report import write_report

    results = out / "results.csv"
    rows = [
        ("a", "CT of the chest showing a nodule.", "CT of the chest showing a nodule."),
        ("b", "MRI of the head with a cyst.", "MRI of the brain showing a cyst."),
        ("c", "X-ray of the knee with a fracture.", "CT of the chest."),
    ]
    out.mkdir(parents=True, exist_ok=True)
    with results.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image_id", "original_caption", "generated_caption"])
        writer.writerows(rows)
    cfg = dataclasses.replace(DEFAULTS.eval, meteor=False)  # METEOR's Java start is slow
    report = evaluate_caption_results(results, cfg, bertscore=False)
    return write_report(report, out / "eval")
