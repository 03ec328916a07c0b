"""Item 6: every path that embeds a query checks the encoder it actually loads."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from medcap.errors import IndexMismatchError
from tests.attack.helpers import (
    build_small_index,
    one_error_line,
    overwrite_weights,
    run_cli,
    write_tiny_checkpoint,
)


def test_text_search_with_another_model_is_refused(
    capsys: pytest.CaptureFixture[str], attack_index: Path
) -> None:
    # The index's image tower is cached: the text path used to load --model unchecked.
    code, out, err = run_cli(
        capsys, "search", "--text", "CT of the chest", "--index", attack_index,
        "--model", "medcap-tiny",
    )  # fmt: skip
    assert code == 1 and out == ""
    assert "fingerprint" in one_error_line(err)


def test_image_search_does_not_ignore_another_model(
    capsys: pytest.CaptureFixture[str], attack_index: Path, query_png: Path
) -> None:
    code, out, err = run_cli(
        capsys, "search", query_png, "--index", attack_index, "--model", "medcap-tiny"
    )
    assert code == 1 and out == ""
    assert "fingerprint" in one_error_line(err)


def test_a_moved_copy_of_the_right_checkpoint_is_accepted(
    capsys: pytest.CaptureFixture[str],
    attack_index: Path,
    attack_checkpoint: Path,
    query_png: Path,
    tmp_path: Path,
) -> None:
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("best.pt", "best.json"):
        shutil.copy2(attack_checkpoint.parent / name, moved / name)
    for _ in range(2):  # the second run finds the copy's hashed fingerprint in the cache
        code, out, _ = run_cli(
            capsys, "search", query_png, "--text", "MRI of the brain", "--index", attack_index,
            "--model", moved / "best.pt", "--k", "3",
        )  # fmt: skip
        assert code == 0 and out.count("query: ") == 1  # the text steers the image query


@pytest.fixture(scope="module")
def replaced(phantom_dataset: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index whose checkpoint was later overwritten with other weights of the same size
    (the sidecar left as it was); its image tower was cached before."""
    root = tmp_path_factory.mktemp("replaced")
    checkpoint = write_tiny_checkpoint(root / "ckpt" / "best.pt", seed=11)
    index = build_small_index(phantom_dataset, checkpoint, root / "index", cases=24)
    overwrite_weights(checkpoint, lambda v: v + 0.01)
    return index


def test_cached_tower_serves_images_but_text_needs_the_real_encoder(replaced: Path) -> None:
    from PIL import Image

    from medcap.retrieval.retriever import open_retriever

    retriever = open_retriever(replaced, device="cpu", image_tower=True)
    image = Image.new("RGB", (64, 64), (90, 90, 90))
    assert len(retriever.search_images([image], 3)[0]) == 3  # the tower is the index's encoder
    with pytest.raises(IndexMismatchError, match="fingerprint"):
        retriever.search_texts(["CT of the chest"], 3)


def test_app_caption_and_concepts_refuse_the_replaced_encoder(
    replaced: Path, phantom_dir: Path, tmp_path: Path
) -> None:
    from medcap.app.session import AppLoadError, open_app_index
    from medcap.config import DEFAULTS
    from medcap.runs.caption import BatchRun, caption_split
    from medcap.runs.evaluate import run_concept_evaluation

    with pytest.raises(AppLoadError, match="fingerprint") as app_err:
        open_app_index(replaced, device="cpu")
    assert app_err.value.kind == "encoder"
    run = BatchRun(str(phantom_dir), "test", str(replaced), str(tmp_path / "captions.csv"))
    with pytest.raises(IndexMismatchError):
        caption_split(run, DEFAULTS.generation, progress=False)
    assert not (tmp_path / "captions.csv").exists()
    with pytest.raises(IndexMismatchError):
        run_concept_evaluation(replaced, phantom_dir, tmp_path / "concepts", cfg=DEFAULTS.eval)


def test_api_search_checks_the_encoder_it_loads(
    attack_index: Path, replaced: Path, query_png: Path
) -> None:
    import medcap

    other = medcap.open_index(attack_index, model="medcap-tiny")  # lazy: loads at a query
    with pytest.raises(IndexMismatchError, match="fingerprint"):
        other.search(text=["CT of the chest"], k=3)
    with pytest.raises(IndexMismatchError, match="fingerprint"):
        medcap.open_index(attack_index, model="medcap-tiny").search(query_png, k=3)
    with pytest.raises(IndexMismatchError, match="fingerprint"):  # weights replaced in place
        medcap.open_index(replaced).search(query_png, k=3)
    assert len(medcap.open_index(attack_index).search(query_png, k=3)[0]) == 3
