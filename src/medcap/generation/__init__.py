"""Retrieval-augmented caption generation: prompts from neighbours, backends, batch runs.

Never imports `medcap.index`: generation receives neighbours (`Hit` lists), not indexes.
"""

from __future__ import annotations

from medcap.generation.backends.base import CaptionBackend, backend_names, get_backend
from medcap.generation.prompt import Prompt, build_prompt, list_templates

__all__ = [
    "CaptionBackend",
    "Prompt",
    "backend_names",
    "build_prompt",
    "get_backend",
    "list_templates",
]
