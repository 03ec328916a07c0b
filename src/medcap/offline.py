"""The one offline check: may medcap try to reach a model or dataset hub?

`MEDCAP_OFFLINE=1` turns every hub fetch off (encoder weights, datasets, generator
models); the Hugging Face variables are honoured too, so an environment set up for
`transformers` or `datasets` behaves the same way here.
"""

from __future__ import annotations

import os

OFFLINE_VARIABLES = (
    "MEDCAP_OFFLINE",
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "TRANSFORMERS_OFFLINE",
)
_TRUE = {"1", "true", "yes", "on"}


def is_offline() -> bool:
    """True when any of `OFFLINE_VARIABLES` is set to a true value (1, true, yes, on)."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in OFFLINE_VARIABLES)
