"""`rank_captions` and `medcap rank`: cosine scores, order, phantom ground truth, errors."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from medcap.cli import main
from medcap.data.images import load_image
from medcap.errors import ImageDecodeError, InputError
from medcap.retrieval.rank import load_captions, rank_captions
from medcap.types import ImageRef

CANDIDATES = [
    "Axial CT of the chest showing a nodule in the right upper lobe.",
    "Sagittal MRI of the brain with a mass.",
    "Axial CT of the chest showing a nodule in the right upper lobe.",  # ties with the first
    "Chest X-ray, frontal view, with an effusion.",
]


@pytest.fixture(scope="module")
def cases(phantom_dataset: Any) -> list[Any]:
    return list(phantom_dataset.records("test")) + list(phantom_dataset.records("valid"))


@pytest.fixture(scope="module")
def case_png(cases: list[Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first test case's image as a PNG file."""
    path = tmp_path_factory.mktemp("rank") / f"{cases[0].image_id}.png"
    load_image(cases[0].image).save(path)
    return path


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["rank", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_scores_are_cosine_similarities_best_first_with_stable_ties(
    tiny_encoder: Any, case_png: Path
) -> None:
    ranked = rank_captions(case_png, CANDIDATES, model=tiny_encoder)
    expected = (
        tiny_encoder.encode_images([load_image(case_png)]) @ tiny_encoder.encode_texts(CANDIDATES).T
    )[0]
    assert sorted(r.position for r in ranked) == list(range(len(CANDIDATES)))
    assert [r.rank for r in ranked] == [1, 2, 3, 4]
    for r in ranked:
        assert r.caption == CANDIDATES[r.position]
        assert r.score == pytest.approx(float(expected[r.position]), abs=1e-6)
    assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)
    duplicates = [r.position for r in ranked if r.caption == CANDIDATES[0]]
    assert duplicates == [0, 2]  # equal scores keep the order the captions were given in

    scale = float(tiny_encoder.model.logit_scale.detach().exp())
    logits = scale * expected.astype(np.float64)
    softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert tiny_encoder.logit_scale == pytest.approx(scale)
    assert sum(r.probability or 0.0 for r in ranked) == pytest.approx(1.0)
    for r in ranked:
        assert r.probability == pytest.approx(float(softmax[r.position]), rel=1e-5)


def test_every_image_form_gives_the_same_scores(
    tiny_encoder: Any, case_png: Path, cases: list[Any], tmp_path: Path
) -> None:
    reference = [r.score for r in rank_captions(str(case_png), CANDIDATES, model=tiny_encoder)]
    as_l = load_image(case_png).convert("L")  # the phantom is gray: L keeps every pixel
    forms: list[Any] = [case_png, as_l, ImageRef(data=case_png.read_bytes()), cases[0].image]
    for form in forms:
        scores = [r.score for r in rank_captions(form, CANDIDATES, model=tiny_encoder)]
        np.testing.assert_allclose(scores, reference, atol=1e-5)

    from pydicom.data import get_testdata_file

    dicom = get_testdata_file("CT_small.dcm")
    by_path = rank_captions(dicom, CANDIDATES, model=tiny_encoder)
    by_pixels = rank_captions(load_image(dicom), CANDIDATES, model=tiny_encoder)
    assert by_path == by_pixels


def test_a_spec_loads_the_encoder(
    trained_checkpoint: Path, trained_encoder: Any, case_png: Path
) -> None:
    loaded = rank_captions(case_png, CANDIDATES, model=trained_encoder)
    for spec in (str(trained_checkpoint), trained_checkpoint.parent):  # a checkpoint, a run folder
        assert rank_captions(case_png, CANDIDATES, model=spec, device="cpu") == loaded


def test_true_caption_beats_other_modalities_with_a_trained_encoder(
    trained_encoder: Any, tiny_encoder: Any, cases: list[Any], phantom_dataset: Any
) -> None:
    train = list(phantom_dataset.records("train"))

    def share_beaten(encoder: Any) -> float:
        """Mean share of other-modality captions that score below the case's own caption."""
        rng = np.random.default_rng(0)
        shares = []
        for case in cases:  # held-out cases: the encoder never saw these pairs
            others = [r.caption for r in train if r.extra["modality"] != case.extra["modality"]]
            distractors = [others[i] for i in rng.choice(len(others), size=20, replace=False)]
            ranked = rank_captions(case.image, [case.caption, *distractors], model=encoder)
            own = next(r.rank for r in ranked if r.position == 0)
            shares.append((len(ranked) - own) / len(distractors))
        return float(np.mean(shares))

    trained, untrained = share_beaten(trained_encoder), share_beaten(tiny_encoder)
    assert trained >= 0.75, (trained, untrained)  # about 0.87 for the fixture's checkpoint
    assert untrained <= 0.6, (trained, untrained)  # chance is 0.5


def test_cli_table_and_json_match_the_library(
    trained_checkpoint: Path,
    trained_encoder: Any,
    case_png: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    listing = tmp_path / "captions.txt"
    listing.write_text("\ufeff" + "\n\n".join(CANDIDATES[1:]) + "\r\n   \n", encoding="utf-8")
    args = [str(case_png), "--caption", CANDIDATES[0], "--captions-file", str(listing)]
    args += ["--model", str(trained_checkpoint), "--device", "cpu"]
    expected = rank_captions(case_png, CANDIDATES, model=trained_encoder)

    code, out, err = _run([*args, "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["image"] == str(case_png) and report["model"] == str(trained_checkpoint)
    assert [(c["rank"], c["position"], c["caption"]) for c in report["captions"]] == [
        (r.rank, r.position, r.caption) for r in expected
    ]
    for row, r in zip(report["captions"], expected, strict=True):
        assert row["score"] == pytest.approx(r.score, abs=1e-5)
        assert row["probability"] == pytest.approx(r.probability, abs=1e-5)

    code, out, err = _run(args, capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"image: {case_png}  (model {trained_checkpoint}, 4 candidate captions)"
    assert lines[1].split() == ["rank", "score", "probability", "caption"]
    for line, r in zip(lines[2:], expected, strict=True):
        rank, score, probability, caption = line.split(maxsplit=3)
        assert (int(rank), caption) == (r.rank, r.caption)
        assert float(score) == pytest.approx(r.score, abs=1e-4)
        assert float(probability) == pytest.approx(r.probability, abs=1e-4)
    assert len(lines) == 2 + len(CANDIDATES)


def test_load_captions_reads_utf8_lines(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_bytes("  Échographie du foie.\r\nCT\x0cchest\rMRI\n\n".encode())
    assert load_captions(path) == ["Échographie du foie.", "CT\x0cchest", "MRI"]


def test_library_errors_are_one_line(tiny_encoder: Any, case_png: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(case_png.read_bytes()[:60])
    cases: list[tuple[Any, Any, dict[str, Any], type[Exception], str]] = [
        (case_png, [], {}, InputError, "no candidate captions"),
        (case_png, "one caption", {}, InputError, "not one string"),
        (case_png, ["fine", "  "], {}, InputError, "candidate caption 2 is empty"),
        (case_png, ["fine", None], {}, InputError, "candidate caption 2 is a NoneType"),
        (tmp_path / "missing.png", ["a"], {}, InputError, "missing.png does not exist"),
        (tmp_path, ["a"], {}, InputError, "is a folder"),
        (broken, ["a"], {}, ImageDecodeError, "cannot decode image"),
        (ImageRef(data=b"not an image"), ["a"], {}, ImageDecodeError, "cannot decode image"),
        (np.zeros((4, 4)), ["a"], {}, InputError, "cannot rank captions for a ndarray"),
        (case_png, ["a"], {"device": "cpu"}, InputError, "device applies only to a model spec"),
    ]
    for image, captions, options, error, message in cases:
        with pytest.raises(error, match=message) as info:
            rank_captions(image, captions, model=tiny_encoder, **options)
        assert "\n" not in str(info.value)
    truncated = Image.open(io.BytesIO(case_png.read_bytes()[:80]))
    with pytest.raises(ImageDecodeError, match="cannot decode the image given"):
        rank_captions(truncated, ["a"], model=tiny_encoder)


def test_cli_errors_are_one_line(
    case_png: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Échographie\n".encode("latin-1"))
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n\n")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    png = str(case_png)
    cases = [
        ([png], 'nothing to rank: give --caption "..."'),
        ([png, "--caption", ""], "candidate caption 1 is empty"),
        ([png, "--captions-file", str(latin1)], "is not UTF-8 text (byte 0)"),
        ([png, "--captions-file", str(blank)], "holds no captions"),
        ([png, "--captions-file", str(tmp_path / "none.txt")], "none.txt does not exist"),
        ([png, "--captions-file", str(tmp_path)], "is a folder"),
        ([str(tmp_path / "nope.png"), "--caption", "a"], "nope.png does not exist"),
        ([str(broken), "--caption", "a"], f"cannot decode image {broken}"),
        ([png, "--caption", "a", "--model", "no-such-model"], "no-such-model"),
    ]
    for args, message in cases:
        code, out, err = _run(args, capsys)
        assert code == 1, (args, out, err)
        assert err.startswith("error: ") and message in err, (args, err)
        assert err.count("\n") == 1 and "Traceback" not in err
        assert out == ""
