"""A small client for a running `medcap serve` service (standard library only).

>>> import medcap
>>> service = medcap.Client("http://127.0.0.1:8600")
>>> hits = service.search("scan.png", k=5, modality="CT")   # list[medcap.Hit], best first
>>> hits = service.search(text="axial CT of the chest", mode="images")
>>> service.caption("scan.png").text

Answers are the library's own types: `medcap.types.Hit` (its `image_path` is None: the
server's files are not the client's; `thumbnail(image_id)` gives the image) and, for
captions, `medcap.CaptionResult`. Every refusal or connection failure is one
`medcap.errors.ServiceError` line with the HTTP status in `.status`.
"""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from medcap.errors import ServiceError
from medcap.types import Hit

if TYPE_CHECKING:
    from medcap.generation.captioning import CaptionResult

DEFAULT_URL = "http://127.0.0.1:8600"
TOKEN_ENV = "MEDCAP_TOKEN"  # where `medcap serve` and `medcap app --api` read a token


def hit_from_json(item: Mapping[str, Any]) -> Hit:
    """A Hit from one hit (or case) of a service answer."""
    return Hit(
        rank=int(item.get("rank", 0)),
        score=float(item.get("score", 0.0)),
        image_id=str(item["image_id"]),
        caption=str(item.get("caption", "")),
        cuis=tuple(item.get("cuis") or ()),
        split=str(item.get("split", "")),
        metadata=dict(item.get("metadata") or {}),
    )


def _image_bytes(image: Any) -> tuple[bytes, str]:
    """(encoded bytes, file name) of an image given as a path, bytes, PIL image or array."""
    if isinstance(image, bytes | bytearray):
        return bytes(image), "image"
    if isinstance(image, str | Path):
        path = Path(image).expanduser()
        try:
            return path.read_bytes(), path.name
        except OSError as exc:
            raise ServiceError(f"cannot read image {path}: {exc.strerror}") from None
    if not hasattr(image, "save"):  # a numpy array: the library's conversion, any dtype
        from medcap.data.query_images import load_query_image

        image = load_query_image(image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue(), "image.png"


class Client:
    """Search, caption and browse cases through a `medcap serve` service at `url`.

    `token` is sent as `Authorization: Bearer <token>` (a service bound beyond loopback
    needs it); `timeout_s` bounds each request.
    """

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, *, timeout_s: float = 60):
        self.url = url.rstrip("/")
        self._token = token
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    # ---- the calls -------------------------------------------------------------------
    def search(
        self,
        image: Any = None,
        *,
        text: str | None = None,
        case: str | None = None,
        k: int | None = None,
        mode: str | None = None,
        where: Mapping[str, Any] | None = None,
        roi: tuple[int, int, int, int] | None = None,
        roi_weight: float | None = None,
        text_weight: float | None = None,
        more_like: Sequence[str] = (),
        less_like: Sequence[str] = (),
        **filters: Any,
    ) -> list[Hit]:
        """Top-k hits for one image (path, bytes, PIL image or array), text, or indexed case
        (its neighbours, itself excluded). Filters: `where={"modality": ["CT"]}` or keywords
        (`modality="CT"`; number ranges as "1..3"). k and mode default to the server's (5;
        captions for an image, images for a text or case).

        Refinements: `roi=(x, y, w, h)` searches a region of the image (`roi_weight`);
        `text=` with an image or case steers it (`text_weight`); `more_like` /
        `less_like` are image_ids of hits marked relevant / not relevant."""
        given = [q is not None for q in (image, text, case)]
        if (given[0] and given[2]) or not any(given):
            raise ServiceError("search takes one of an image, text= or case= (text may steer one)")
        conditions = {**(where or {}), **filters}
        options: dict[str, Any] = {
            "k": k, "mode": mode, "roi_weight": roi_weight, "text_weight": text_weight,
            "roi": ",".join(str(int(v)) for v in roi) if roi is not None else None,
            "more_like": list(more_like) or None, "less_like": list(less_like) or None,
        }  # fmt: skip
        if image is not None:
            if conditions:
                options["where"] = json.dumps(conditions)
            answer = self._post_image("/v1/search", image, {**options, "text": text})
        else:
            query = {"text": text, "case": case}
            body = {**query, **options, "where": conditions or None}
            answer = self._request("POST", "/v1/search", json_body=body)
        return [hit_from_json(h) for h in answer["hits"]]

    def caption(self, image: Any, *, k: int | None = None) -> CaptionResult:
        """A caption of one image from its neighbours, by the server's caption backend."""
        from medcap.generation.captioning import CaptionResult
        from medcap.generation.prompt import Prompt
        from medcap.types import Caption

        answer = self._post_image("/v1/caption", image, {"k": k})
        neighbours = [hit_from_json(h) for h in answer["neighbours"]]
        ids = tuple(h.image_id for h in neighbours)
        scores = tuple(h.score for h in neighbours)
        prompt = Prompt(
            text=answer["prompt"]["text"],
            template=answer["prompt"]["template"],
            neighbour_ids=ids,
            neighbour_captions=tuple(h.caption for h in neighbours),
            neighbour_scores=scores,
        )
        caption = Caption(
            text=answer["caption"],
            backend=answer["backend"],
            model=answer["model"],
            latency_s=float(answer["took_ms"]) / 1000,
            neighbour_ids=ids,
            neighbour_scores=scores,
        )
        return CaptionResult(caption, neighbours, prompt)

    def case(self, image_id: str) -> Hit:
        """One indexed case (rank 0, score 0.0); ServiceError with status 404 if absent."""
        return hit_from_json(self._request("GET", _case_path(image_id)))

    def thumbnail(self, image_id: str) -> bytes:
        """JPEG bytes of a case's thumbnail."""
        data: bytes = self._request("GET", _case_path(image_id) + "/thumbnail", raw=True)
        return data

    def index(self) -> dict[str, Any]:
        """The served index in short: count, encoder, index type, created at, columns."""
        answer: dict[str, Any] = self._request("GET", "/v1/index")
        return answer

    def ready(self) -> bool:
        """Whether the service answers and has loaded its index."""
        try:
            return self._request("GET", "/readyz").get("status") == "ready"  # type: ignore[no-any-return]
        except ServiceError:
            return False

    # ---- HTTP ------------------------------------------------------------------------
    def _post_image(self, path: str, image: Any, options: Mapping[str, Any]) -> Any:
        data, name = _image_bytes(image)
        boundary = uuid.uuid4().hex
        safe_name = name.replace('"', "_").replace("\r", "_").replace("\n", "_")
        disposition = f'form-data; name="image"; filename="{safe_name}"'
        body = b"".join(
            [
                f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode(),
                b"Content-Type: application/octet-stream\r\n\r\n",
                data,
                f"\r\n--{boundary}--\r\n".encode(),
            ]
        )
        query = urlencode({key: v for key, v in options.items() if v is not None}, doseq=True)
        return self._request(
            "POST",
            path + (f"?{query}" if query else ""),
            body=body,
            content_type=f"multipart/form-data; boundary={boundary}",
        )

    def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        raw: bool = False,
    ) -> Any:
        headers = {"accept": "application/json"}
        if self._token is not None:
            headers["authorization"] = f"Bearer {self._token}"
        if json_body is not None:
            body = json.dumps({k: v for k, v in json_body.items() if v is not None}).encode()
            content_type = "application/json"
        if content_type is not None:
            headers["content-type"] = content_type
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
                data = reply.read()
        except urllib.error.HTTPError as exc:
            raise ServiceError(
                f"{self.url}: {_error_text(exc)} (HTTP {exc.code})", status=exc.code
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServiceError(
                f"cannot reach the medcap service at {self.url} ({reason}); start one with "
                "`medcap serve --index DIR` or check the URL"
            ) from None
        return data if raw else json.loads(data)


def _case_path(image_id: str) -> str:
    return f"/v1/cases/{quote(image_id, safe='')}"


def _error_text(exc: urllib.error.HTTPError) -> str:
    """The service's one-line `error`, or the HTTP reason when the body has none."""
    try:
        text = json.loads(exc.read()).get("error")
    except (ValueError, AttributeError, OSError):
        text = None
    return str(text or exc.reason)
