"""Fixtures for the generation tests: small caption sets, neighbours and tiny VLMs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

from medcap.generation.prompt import Prompt, build_prompt
from tests.generation.gen_helpers import make_captions, make_hits, make_image


@pytest.fixture(scope="session")
def captions() -> list[str]:
    return make_captions(40)


@pytest.fixture()
def prompts_and_images(captions: list[str]) -> tuple[list[Image.Image], list[Prompt]]:
    """Three queries with different neighbours (and prompt lengths) and image sizes/modes."""
    images = [make_image(0), make_image(1, "L"), make_image(2)]
    prompts = [
        build_prompt(make_hits(captions[0:5], "a"), k=5),
        build_prompt(make_hits(captions[5:7], "b"), k=5, modality_hint="CT"),
        build_prompt(make_hits(captions[7:10], "c"), k=3, template="smallcap"),
    ]
    return images, prompts


@pytest.fixture()
def tiny_qwen(captions: list[str]) -> Callable[..., tuple[Any, Any]]:
    from tests.support.tiny_generators import build_tiny_qwen2vl

    return lambda seed=0: build_tiny_qwen2vl(captions, seed=seed)


@pytest.fixture()
def tiny_blip2(captions: list[str]) -> Callable[..., tuple[Any, Any]]:
    from tests.support.tiny_generators import build_tiny_blip2

    return lambda seed=0: build_tiny_blip2(captions, seed=seed)
