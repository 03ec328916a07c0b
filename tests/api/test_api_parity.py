"""The API gives what the commands give: the same numbers, hits and captions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import medcap
from medcap.cli import main


@pytest.fixture(scope="module")
def results_csv(
    phantom_dir: Path, phantom_index_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("api_captions") / "results.csv"
    base = ["caption", "--index", str(phantom_index_dir), "--data", str(phantom_dir)]
    assert main([*base, "--split", "test", "--out", str(out)]) == 0
    return out


def test_evaluate_retrieval_matches_the_command(
    phantom_dir: Path, trained_checkpoint: Path, tmp_path: Path
) -> None:
    argv = ["eval", "retrieval", "--data", str(phantom_dir), "--model", str(trained_checkpoint)]
    assert main([*argv, "--out", str(tmp_path / "cli")]) == 0
    cli = json.loads((tmp_path / "cli" / "report.json").read_text())
    api = medcap.evaluate_retrieval(phantom_dir, [str(trained_checkpoint)])
    assert [e["ranks"] for e in api.encoders] == [e["ranks"] for e in cli["encoders"]]
    for entry in cli["encoders"]:
        for direction, scores in api.metrics[entry["label"]].items():
            assert scores == {k: v for k, v in entry[direction].items() if k != "recall_curve"}
    written = json.loads(api.write(tmp_path / "api").read_text())
    assert written["encoders"][0]["image_to_text"] == cli["encoders"][0]["image_to_text"]
    assert written["thumbnails"] and (tmp_path / "api" / "report.md").exists()


def test_score_captions_matches_the_command(
    results_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    argv = ["eval", "captions", str(results_csv), "--json", "--no-meteor", "--no-bertscore"]
    assert main(argv) == 0
    cli = json.loads(capsys.readouterr().out)
    api = medcap.score_captions(results_csv, meteor=False, bertscore=False)
    assert api.n == cli["n"] == 20
    assert api.metrics == cli["metrics"] and set(api.metrics) >= {"BLEU-4", "ROUGE-L", "CIDEr"}
    assert json.loads(api.write(tmp_path / "r").read_text())["metrics"] == cli["metrics"]


def test_caption_matches_the_command(
    phantom_index_dir: Path,
    phantom_dataset: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from medcap.data.images import load_image

    record = next(iter(phantom_dataset.records("test")))
    path = tmp_path / "q.png"
    load_image(record.image).save(path)
    capsys.readouterr()
    assert main(["caption", str(path), "--index", str(phantom_index_dir), "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)[0]
    index = medcap.open_index(phantom_index_dir, device="cpu")
    [result] = medcap.caption(index, path)
    assert result.text == cli["caption"] and result.backend == cli["backend"] == "consensus"
    assert [h.image_id for h in result.neighbours] == [n["image_id"] for n in cli["neighbours"]]
    assert [h.rank for h in result.neighbours] == list(range(1, 6))
    # an indexed case named by image_ids is not its own neighbour
    own = next(iter(phantom_dataset.records("train")))
    [mine] = medcap.caption(index, own.image, image_ids=[own.image_id], k=3)
    assert own.image_id not in [h.image_id for h in mine.neighbours] and len(mine.neighbours) == 3


def test_search_takes_paths_images_arrays_and_dicom(
    phantom_index_dir: Path, phantom_dataset: Any, tmp_path: Path
) -> None:
    from pydicom.data import get_testdata_file

    from medcap.data.images import load_image

    index = medcap.open_index(phantom_index_dir, device="cpu")
    assert repr(index).endswith("loads on first query)")
    image = load_image(next(iter(phantom_dataset.records("test"))).image)
    path = tmp_path / "q.png"
    image.save(path)
    by_path, by_pil, by_array = index.search([path, image, np.asarray(image)], k=4)
    ids = [h.image_id for h in by_path]
    assert [h.image_id for h in by_pil] == ids == [h.image_id for h in by_array]
    gray = np.asarray(image.convert("L")).astype(np.uint16) * 257  # 16-bit grayscale
    assert [h.image_id for h in index.search(gray, k=4)[0]] == ids  # windowed like a file
    assert [h.rank for h in by_path] == [1, 2, 3, 4]
    dicom = index.search(get_testdata_file("CT_small.dcm"), k=2)
    assert len(dicom) == 1 and len(dicom[0]) == 2
    texts = index.search(text=["CT of the chest", "MRI of the head"], k=3, mode="captions")
    assert len(texts) == 2 and all(len(h) == 3 for h in texts)


def test_search_mistakes_are_one_line_errors(phantom_index_dir: Path, tmp_path: Path) -> None:
    index = medcap.open_index(phantom_index_dir, device="cpu")
    with pytest.raises(medcap.InputError, match="k must be at least 1"):
        index.search(text="CT", k=0)  # once silently 5
    with pytest.raises(medcap.InputError, match="steer image queries with one text"):
        index.search(tmp_path / "q.png", text=["CT", "MRI"])  # one text steers images
    with pytest.raises(medcap.InputError, match="unknown filter column 'organ'; this index has"):
        index.search(text="CT", where={"organ": "lung"})
    with pytest.raises(medcap.ImageDecodeError, match="does not exist"):
        index.search(tmp_path / "missing.png")
    with pytest.raises(medcap.ImageDecodeError, match=r"\(H, W\) or \(H, W, C\)"):
        index.search(np.zeros((2, 8, 8, 3), np.uint8))
