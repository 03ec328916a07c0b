"""Request bodies: an image in multipart field `image`, or a JSON object.

Images are decoded by the library's loader (`medcap.data.query_images`), on a worker
thread so the event loop keeps serving; its limits (decompression bombs) apply. The body
size limit is enforced while the body is read (medcap.serve.middleware).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request

from medcap.errors import ImageDecodeError, InputError

if TYPE_CHECKING:
    from PIL import Image

IMAGE_FIELD = "image"
MULTIPART = "multipart/form-data"
JSON = "application/json"


class UnsupportedBodyError(InputError):
    """A body that is neither multipart nor JSON (a 415)."""


def body_kind(request: Request) -> str:
    """`multipart/form-data` or `application/json`; anything else is refused."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in (MULTIPART, JSON):
        return kind
    raise UnsupportedBodyError(
        f"content type {kind or 'none'!r}: send an image as multipart field "
        f"{IMAGE_FIELD!r} (PNG, JPEG or DICOM) or a JSON object"
    )


async def read_image(request: Request) -> Image.Image:
    """The decoded image of multipart field `image` (8-bit RGB)."""
    from medcap.data.query_images import load_query_image
    from medcap.types import ImageRef

    form = await request.form(max_files=1, max_fields=16)
    try:
        upload = form.get(IMAGE_FIELD)
        if not isinstance(upload, UploadFile):
            raise InputError(f"send the image as a file in multipart field {IMAGE_FIELD!r}")
        data = await upload.read()
    finally:
        await form.close()
    if not data:
        raise InputError(f"the uploaded {IMAGE_FIELD!r} is empty; send a PNG, JPEG or DICOM file")
    name = f"upload {upload.filename or IMAGE_FIELD!r}"
    try:
        return await run_in_threadpool(load_query_image, ImageRef(path=name, data=data))
    except ImageDecodeError as exc:
        # the loader's advice is for dataset files; an upload is answered with its own
        reason = str(exc).removesuffix("; replace or remove the file")
        raise ImageDecodeError(f"{reason}; send a PNG, JPEG or DICOM image") from None


async def read_json(request: Request) -> dict[str, Any]:
    """The JSON object of the body."""
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"the body is not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise InputError(f"the JSON body must be an object, got {type(body).__name__}")
    return body
