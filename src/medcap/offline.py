"""The one offline check: may medcap try to reach a model or dataset hub?

`MEDCAP_OFFLINE=1` (or Hugging Face's `HF_HUB_OFFLINE=1`) turns every hub fetch off:
encoder weights, datasets, generator models. The library-specific variables keep their
own scope, as in the Hugging Face libraries: `HF_DATASETS_OFFLINE` for datasets,
`TRANSFORMERS_OFFLINE` for models.
"""

from __future__ import annotations

import os
from typing import Literal

Fetch = Literal["datasets", "models"]
ALWAYS = ("MEDCAP_OFFLINE", "HF_HUB_OFFLINE")
SCOPED: dict[Fetch, tuple[str, ...]] = {
    "datasets": ("HF_DATASETS_OFFLINE",),
    "models": ("TRANSFORMERS_OFFLINE",),
}
_TRUE = {"1", "true", "yes", "on"}


def offline_variables(what: Fetch) -> tuple[str, ...]:
    """The environment variables that forbid fetching `what`."""
    return (*ALWAYS, *SCOPED[what])


def is_offline(what: Fetch) -> bool:
    """True when one of `offline_variables(what)` is set to a true value (1, true, yes, on)."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in offline_variables(what))
