"""The generation fixtures (tiny VLMs, prompts and images) for the GPU tests as well."""

from __future__ import annotations

from tests.generation.conftest import (  # noqa: F401
    captions,
    prompts_and_images,
    tiny_blip2,
    tiny_qwen,
)
