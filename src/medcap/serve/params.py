"""Search parameters of `POST /v1/search`, read and checked in this one place.

Parameters come from the query string (`?k=5&mode=images&modality=CT`) and, for JSON
requests, from the body (`{"text": "...", "k": 5, "where": {"modality": "CT"}}`). Names in
`RESERVED` are parameters; every other name is a metadata filter on the column of that
name (a column called like a parameter is filtered with `where`). A filter takes one value
or several (`?modality=CT&modality=MRI`, `"modality": ["CT", "MRI"]`); `where` is a JSON
object of such filters, in the body or as JSON text in the query string. A name given
twice (query string and body, or as a filter and in `where`) is refused. To add a search
parameter: add its name to RESERVED and read it in `parse_search`.

Refinements (medcap.retrieval.refine): `roi` ("x,y,w,h" or [x, y, w, h]) and
`roi_weight` for an uploaded image; `text` with an upload (query string) or with a `case`
steers that image (`text_weight`); `more_like` / `less_like` (image_ids; repeat the
parameter or give a list) for any query.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from medcap.config import RetrievalConfig, SearchMode, ServeConfig
from medcap.errors import InputError
from medcap.retrieval.refine import Refinement, parse_roi

MODES: tuple[SearchMode, ...] = ("captions", "images")
QUERY_FIELDS = ("text", "case")  # a JSON body names one of these (an image is multipart)
REFINE_FIELDS = ("roi", "roi_weight", "text_weight", "more_like", "less_like")
MULTI = frozenset({"more_like", "less_like"})  # reserved names that may repeat
RESERVED = frozenset({"k", "mode", "where", *QUERY_FIELDS, *REFINE_FIELDS})
FilterValue = str | int | float | bool
WhereKey = tuple[tuple[str, tuple[FilterValue, ...]], ...]


@dataclass(frozen=True)
class SearchParams:
    """How one query is searched: `k` hits, against `mode`, among cases matching `where`."""

    k: int
    mode: SearchMode
    where: Mapping[str, tuple[FilterValue, ...]] | None = None

    def group_key(self) -> tuple[str, WhereKey]:
        """Queries with equal keys are searched in one index call."""
        where = tuple(sorted((self.where or {}).items()))
        return self.mode, where


@dataclass(frozen=True)
class SearchRequest:
    """A parsed search: its parameters and, for JSON requests, the text or indexed case."""

    params: SearchParams
    text: str | None = None
    case: str | None = None  # image_id of an indexed case: its own stored image vector
    refine: Refinement | None = None  # None: searched as it is (and micro-batched)


def one_value(name: str, values: Sequence[str]) -> str:
    """The single value of query parameter `name` (given twice is an error)."""
    if len(values) != 1:
        raise InputError(f"parameter {name!r} is given {len(values)} times; give it once")
    return values[0]


def parse_k(value: Any, max_k: int) -> int:
    """`k` (an int, or its text) between 1 and `max_k` (serve.max_k)."""
    try:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError
        k = int(value)
    except ValueError:
        raise InputError(f"k must be an integer, got {value!r}") from None
    if not 1 <= k <= max_k:
        raise InputError(f"k must be between 1 and {max_k} (serve.max_k), got {k}")
    return k


def _filter_values(name: str, value: Any) -> tuple[FilterValue, ...]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str | int | float | bool) for v in values):
        raise InputError(
            f"filter {name!r} takes a value or a list of values (text or numbers), got {value!r}"
        )
    return tuple(values)  # compared as the index displays them (2.0 matches "2")


def _mode(value: Any) -> SearchMode:
    for mode in MODES:
        if value == mode:
            return mode
    raise InputError(f"unknown mode {value!r}; valid: {', '.join(MODES)}")


def _where_object(value: Any, where: str) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise InputError(f"{where}: 'where' must be a JSON object of filters") from None
    if not isinstance(value, dict):
        raise InputError(f"{where}: 'where' must be a JSON object of filters, got {value!r}")
    return value


def _merge(query: Mapping[str, Sequence[str]], body: Mapping[str, Any]) -> dict[str, Any]:
    """Every named value, query string and body together; a name in both is refused."""
    given: dict[str, Any] = {}
    for name, values in query.items():
        multi = name not in RESERVED or name in MULTI
        given[name] = list(values) if multi else one_value(name, values)
    for name, value in body.items():
        if name in given:
            raise InputError(f"{name!r} is given in both the query string and the JSON body")
        given[name] = value
    return given


def parse_search(
    query: Mapping[str, Sequence[str]],
    body: Mapping[str, Any] | None,
    *,
    columns: Sequence[str],
    cfg: ServeConfig,
    retrieval: RetrievalConfig,
) -> SearchRequest:
    """The search a request asks for; InputError (a 400) names what is wrong.

    `query` maps each query-string name to its values; `body` is the JSON object of a JSON
    request (None for an image upload); `columns` are the index's filterable columns.
    """
    given = _merge(query, body or {})
    text, case = given.pop("text", None), given.pop("case", None)
    if text is not None and not isinstance(text, str):
        raise InputError(f'"text" must be a string, got {type(text).__name__}')
    if text is not None and not text.strip():
        raise InputError('"text" is empty; give words to search for')
    if body is not None:
        if text is None and case is None:
            raise InputError('a JSON search needs "text" (words) or "case" (an indexed image_id)')
        if case is not None and not isinstance(case, str):
            raise InputError(f'"case" must be an image_id string, got {type(case).__name__}')
    elif case is not None:
        raise InputError("send case in a JSON body, not in the query string of an upload")
    steer = text if (body is None or case is not None) else None  # text with an image steers it
    refine = _refinement(given, steer)
    default_mode = retrieval.mode if body is None else retrieval.text_mode
    if case is not None:
        default_mode = "images"  # a case's neighbours: the cases that look alike
    k = parse_k(given.pop("k"), cfg.max_k) if "k" in given else retrieval.k
    mode = _mode(given.pop("mode", default_mode))
    filters = _where_object(given.pop("where"), "where") if "where" in given else {}
    for name in given:
        if name in filters:
            raise InputError(f"filter {name!r} is given both on its own and in 'where'")
    filters.update(given)
    unknown = sorted(set(filters) - set(columns))
    if unknown:
        raise InputError(
            f"unknown filter column {unknown[0]!r}; this index has: {', '.join(columns)}"
        )
    where = {name: _filter_values(name, value) for name, value in filters.items()}
    return SearchRequest(
        SearchParams(k, mode, where or None),
        text=None if steer is not None else text,
        case=case,
        refine=None if refine.empty else refine,
    )


def _weight(name: str, value: Any) -> float | None:
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number in [0, 1], got {value!r}") from None


def _ids(name: str, value: Any) -> tuple[str, ...]:
    values = value if isinstance(value, list) else [] if value is None else [value]
    if not all(isinstance(v, str) and v for v in values):
        raise InputError(f"{name} takes image_ids (strings), got {value!r}")
    return tuple(values)


def _refinement(given: dict[str, Any], steer: str | None) -> Refinement:
    """The refinement named by the request's refine fields (popped from `given`)."""
    roi = given.pop("roi", None)
    if isinstance(roi, list):
        roi = ",".join(str(v) for v in roi)
    if roi is not None and not isinstance(roi, str):
        raise InputError(f"roi must be x,y,w,h pixels, got {roi!r}")
    return Refinement(
        roi=parse_roi(roi) if roi is not None else None,
        roi_weight=_weight("roi_weight", given.pop("roi_weight", None)),
        text=steer,
        text_weight=_weight("text_weight", given.pop("text_weight", None)),
        more_like=_ids("more_like", given.pop("more_like", None)),
        less_like=_ids("less_like", given.pop("less_like", None)),
    )
