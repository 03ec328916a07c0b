"""medcap's COCO caption metrics and tokeniser against pycocoevalcap on the same inputs."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from medcap.evaluation.caption_metrics import compute_caption_metrics
from medcap.evaluation.coco_metrics import bleu, cider_d, lcs_length, rouge_l
from medcap.evaluation.tokenize import ptb_tokenize

pytest.importorskip("pycocoevalcap")
from pycocoevalcap.bleu.bleu import Bleu  # noqa: E402
from pycocoevalcap.cider.cider import Cider  # noqa: E402
from pycocoevalcap.rouge.rouge import Rouge, my_lcs  # noqa: E402

CORPUS = [
    line
    for line in (Path(__file__).parent / "ptb_corpus.txt").read_text(encoding="utf-8").splitlines()
    if line.strip()
]
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="needs Java for the jars")


def _phantom_like_captions(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    modality = ["Axial CT", "Coronal MRI", "Ultrasound", "Chest X-ray", "PET/CT", "DSA"]
    verb = ["showing", "demonstrates", "reveals", "with", "depicting"]
    finding = [
        "a 2 cm nodule",
        "a 3.5cm mass",
        "free fluid",
        "a fracture",
        "an abscess",
        "no abnormality",
    ]
    where = [
        "in the right upper lobe",
        "of the left kidney",
        "at L4-L5",
        "(arrow)",
        "(arrows).",
        ".",
    ]
    return [
        f"{rng.choice(modality)} {rng.choice(verb)} {rng.choice(finding)} {rng.choice(where)}"
        for _ in range(n)
    ]


def _inputs(seed: int) -> tuple[list[str], list[list[str]]]:
    """Tokenised candidates and 1-3 references each, with exact, partial and no overlap."""
    rng = random.Random(seed)
    pool = [ptb_tokenize(c) for c in CORPUS + _phantom_like_captions(120, seed)]
    pool += ["", "a", "the the the the"]  # empty and degenerate captions
    candidates, references = [], []
    for i in range(150):
        refs = [rng.choice(pool) for _ in range(rng.randint(1, 3))]
        if i % 3 == 0:
            cand = refs[0]  # exact match with one reference
        elif i % 3 == 1:
            words = refs[-1].split()
            cand = " ".join(words[: max(1, len(words) // 2)] + ["extra", "words"])
        else:
            cand = rng.choice(pool)
        candidates.append(cand)
        references.append(refs)
    return candidates, references


@pytest.mark.parametrize("seed", [0, 1])
def test_bleu_rouge_cider_match_pycocoevalcap(seed: int) -> None:
    candidates, references = _inputs(seed)
    gts = {i: refs for i, refs in enumerate(references)}
    res = {i: [cand] for i, cand in enumerate(candidates)}

    corpus, per_item = bleu(candidates, references)
    ref_corpus, ref_items = Bleu(4).compute_score(gts, res, verbose=0)
    assert corpus == pytest.approx(ref_corpus, rel=1e-12, abs=1e-15)
    for n in range(4):
        assert per_item[n] == pytest.approx(ref_items[n], rel=1e-12, abs=1e-15)

    score, items = rouge_l(candidates, references)
    ref_score, ref_items_r = Rouge().compute_score(gts, res)
    assert score == pytest.approx(float(ref_score), rel=1e-12)
    assert items == pytest.approx(list(ref_items_r), rel=1e-12)

    score, items = cider_d(candidates, references)
    ref_score, ref_items_c = Cider().compute_score(gts, res)
    assert score == pytest.approx(float(ref_score), rel=1e-9)
    assert items == pytest.approx(list(ref_items_c), rel=1e-9, abs=1e-12)


def test_lcs_matches_dynamic_programming() -> None:
    rng = random.Random(5)
    for _ in range(500):
        a = [rng.choice("abcd") for _ in range(rng.randint(1, 15))]
        b = [rng.choice("abcd") for _ in range(rng.randint(1, 15))]
        assert lcs_length(a, b) == my_lcs(a, b)
    assert lcs_length([], ["a"]) == 0


@needs_java
def test_tokeniser_matches_stanford_ptb_tokenizer() -> None:
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    captions = CORPUS + _phantom_like_captions(60, 3)
    expected = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(captions)})
    mismatches = [
        (c, ptb_tokenize(c), expected[i][0])
        for i, c in enumerate(captions)
        if ptb_tokenize(c) != expected[i][0]
    ]
    assert mismatches == []


@needs_java
@pytest.mark.slow
def test_end_to_end_scores_match_coco_evaluation_with_meteor() -> None:
    """Raw captions -> medcap vs PTBTokenizer + every pycocoevalcap scorer, METEOR included."""
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    rng = random.Random(11)
    raw = CORPUS[:40] + _phantom_like_captions(40, 11)
    references = [[rng.choice(raw) for _ in range(2)] for _ in range(40)]
    candidates = [refs[0] if i % 4 == 0 else rng.choice(raw) for i, refs in enumerate(references)]

    ours = compute_caption_metrics(references, candidates)
    tok = PTBTokenizer()
    gts = tok.tokenize({i: [{"caption": r} for r in refs] for i, refs in enumerate(references)})
    res = tok.tokenize({i: [{"caption": c}] for i, c in enumerate(candidates)})
    bleu_ref, _ = Bleu(4).compute_score(gts, res, verbose=0)
    expected = {f"BLEU-{n + 1}": bleu_ref[n] for n in range(4)}
    expected["METEOR"], _ = Meteor().compute_score(gts, res)
    expected["ROUGE-L"], _ = Rouge().compute_score(gts, res)
    expected["CIDEr"], _ = Cider().compute_score(gts, res)
    assert ours.unavailable == {}
    for name, value in expected.items():
        assert ours.metrics[name] == pytest.approx(float(value), rel=1e-9), name
