"""The consensus backend: the neighbour caption the others agree with most, deterministically."""

from __future__ import annotations

import math
import random

import pytest

from medcap.errors import InputError
from medcap.generation.backends import CaptionBackend, backend_names, get_backend
from medcap.generation.backends.consensus import cider_d_matrix, pick_consensus, token_f1_matrix
from medcap.generation.prompt import build_prompt
from tests.generation.gen_helpers import make_captions, make_hits, make_image

CHEST = [
    "CT of the chest showing a 2 cm nodule in the right upper lobe.",
    "CT of the chest showing a 3 cm nodule in the right upper lobe (arrow).",
    "CT of the chest showing a nodule in the right upper lobe.",
]
OTHERS = ["MRI of the brain showing a cyst.", "Ultrasound of the knee with effusion."]


def test_cider_d_by_hand() -> None:
    # "a b" twice and "c": unigrams a, b and bigram "a b" have df 2 of 3 documents, so
    # identical captions score 1 on n=1 and n=2 and nothing on n=3, 4: 10 * (1 + 1) / 4.
    matrix = cider_d_matrix(["a b", "a b", "c"])
    assert matrix[0][1] == pytest.approx(5.0)
    assert matrix[0][2] == 0.0 and matrix[2][0] == 0.0
    assert matrix[0][0] == 0.0  # a caption is never compared with itself


def test_cider_d_length_penalty() -> None:
    # Same shared n-grams, one candidate padded with 6 words nobody else uses.
    short, padded = "x y", "x y q r s t u v"
    matrix = cider_d_matrix([short, "x y", padded, "z"])
    assert matrix[2][1] < matrix[0][1]
    cosine_part = matrix[2][1] / math.exp(-(6**2) / (2 * 6.0**2))
    assert cosine_part < matrix[0][1]  # padding also dilutes the tf-idf vector


def test_token_f1_by_hand() -> None:
    matrix = token_f1_matrix(["a b c", "a b d e", "f"])
    assert matrix[0][1] == pytest.approx(2 * 2 / 7)
    assert matrix[0][2] == 0.0


@pytest.mark.parametrize("similarity", ["cider-d", "token-f1"])
def test_picks_a_caption_of_the_majority(similarity: str) -> None:
    captions = [OTHERS[0], CHEST[0], OTHERS[1], CHEST[1], CHEST[2]]
    assert captions[pick_consensus(captions, similarity)] in CHEST


def test_ties_go_to_the_best_ranked_neighbour() -> None:
    assert pick_consensus(["same caption.", "same caption.", "same caption."]) == 0
    assert pick_consensus(["first caption here.", "second one."]) == 0
    assert pick_consensus(["only one."]) == 0


def test_backend_returns_a_neighbour_caption_exactly_and_deterministically() -> None:
    backend = get_backend("consensus")
    assert isinstance(backend, CaptionBackend) and backend.name == "consensus"
    rng = random.Random(3)
    prompts = []
    for i in range(12):
        neighbours = make_captions(5, seed=i)
        rng.shuffle(neighbours)
        prompts.append(build_prompt(make_hits(neighbours, f"q{i}"), k=5))
    images = [make_image(i) for i in range(len(prompts))]
    first = backend.generate(images, prompts)
    again = get_backend("consensus").generate(images, prompts)
    one_by_one = [backend.generate([img], [p])[0] for img, p in zip(images, prompts, strict=True)]
    assert first == again == one_by_one
    for text, prompt in zip(first, prompts, strict=True):
        assert text in prompt.neighbour_captions


def test_no_neighbours_gives_an_empty_caption() -> None:
    prompt = build_prompt([], k=5)
    assert get_backend("consensus").generate([make_image(0)], [prompt]) == [""]


def test_unknown_names_are_user_errors() -> None:
    assert {"consensus", "qwen2-vl", "blip2-lora"} <= set(backend_names())
    with pytest.raises(InputError, match="unknown caption backend 'gpt'.*consensus"):
        get_backend("gpt")
    with pytest.raises(InputError, match="unknown consensus similarity"):
        get_backend("consensus", similarity="bleu-9")
