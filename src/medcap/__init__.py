"""medcap: retrieval-based captioning for radiology images.

The calls a notebook needs, each one line (see README, "Python API"):

>>> import medcap
>>> data = medcap.open_dataset("demo-out/phantoms")
>>> index = medcap.open_index("demo-out/index")
>>> hits = index.search("scan.png", k=5)[0]            # or text=[...], where={...}
>>> captions = medcap.caption(index, ["scan.png"])
>>> medcap.evaluate_retrieval("demo-out/phantoms", ["medcap-tiny"]).metrics
>>> medcap.rank_captions("scan.png", ["CT of the chest", "MRI of the brain"])[0].caption
>>> medcap.Client("http://127.0.0.1:8600").search("scan.png", k=5)   # a `medcap serve`

Everything loads on first use: `import medcap` imports neither torch, faiss nor
open_clip. The subpackages (`medcap.data`, `.encoder`, `.index`, `.retrieval`,
`.generation`, `.evaluation`) hold the rest of the library.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> "module:attribute", imported when first asked for
_LAZY: dict[str, str] = {
    # calls
    "open_dataset": "medcap.data.readers:open_dataset",
    "load_encoder": "medcap.encoder.encoder:load_encoder",
    "build_index": "medcap.api:build_index",
    "open_index": "medcap.api:open_index",
    "caption": "medcap.api:caption",
    "evaluate_retrieval": "medcap.api:evaluate_retrieval",
    "score_captions": "medcap.api:score_captions",
    "rank_captions": "medcap.retrieval.rank:rank_captions",
    "Client": "medcap.client:Client",  # a running `medcap serve` service
    # what they return
    "Dataset": "medcap.data.dataset:Dataset",
    "Encoder": "medcap.encoder.encoder:Encoder",
    "Retriever": "medcap.retrieval.retriever:Retriever",
    "CaptionResult": "medcap.generation.captioning:CaptionResult",
    "RetrievalEvaluation": "medcap.runs.evaluate:RetrievalEvaluation",
    "CaptionScores": "medcap.runs.evaluate:CaptionScores",
    "RankedCaption": "medcap.retrieval.rank:RankedCaption",
    # values passed between stages
    "Record": "medcap.types:Record",
    "ImageRef": "medcap.types:ImageRef",
    "Hit": "medcap.types:Hit",
    "Caption": "medcap.types:Caption",
    "Skipped": "medcap.types:Skipped",
    # errors (every one a MedcapError with a one-line message)
    "MedcapError": "medcap.errors:MedcapError",
    "InputError": "medcap.errors:InputError",
    "ImageDecodeError": "medcap.errors:ImageDecodeError",
    "OfflineFetchError": "medcap.errors:OfflineFetchError",
    "IndexMismatchError": "medcap.errors:IndexMismatchError",
    "CorruptArtifactError": "medcap.errors:CorruptArtifactError",
    "MissingExtraError": "medcap.errors:MissingExtraError",
    "ServiceError": "medcap.errors:ServiceError",
}

# Written out (not `[*_LAZY]`) so linters and type checkers read it; a test keeps both equal.
__all__ = [
    "Caption",
    "CaptionResult",
    "CaptionScores",
    "Client",
    "CorruptArtifactError",
    "Dataset",
    "Encoder",
    "Hit",
    "ImageDecodeError",
    "ImageRef",
    "IndexMismatchError",
    "InputError",
    "MedcapError",
    "MissingExtraError",
    "OfflineFetchError",
    "RankedCaption",
    "Record",
    "RetrievalEvaluation",
    "Retriever",
    "ServiceError",
    "Skipped",
    "__version__",
    "build_index",
    "caption",
    "evaluate_retrieval",
    "load_encoder",
    "open_dataset",
    "open_index",
    "rank_captions",
    "score_captions",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; nothing of this runs
    from medcap.api import (
        build_index,
        caption,
        evaluate_retrieval,
        open_index,
        score_captions,
    )
    from medcap.client import Client
    from medcap.data.dataset import Dataset
    from medcap.data.readers import open_dataset
    from medcap.encoder.encoder import Encoder, load_encoder
    from medcap.errors import (
        CorruptArtifactError,
        ImageDecodeError,
        IndexMismatchError,
        InputError,
        MedcapError,
        MissingExtraError,
        OfflineFetchError,
        ServiceError,
    )
    from medcap.generation.captioning import CaptionResult
    from medcap.retrieval.rank import RankedCaption, rank_captions
    from medcap.retrieval.retriever import Retriever
    from medcap.runs.evaluate import CaptionScores, RetrievalEvaluation
    from medcap.types import Caption, Hit, ImageRef, Record, Skipped


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'medcap' has no attribute {name!r}")
    module_name, attribute = target.split(":")
    value = getattr(importlib.import_module(module_name), attribute)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
