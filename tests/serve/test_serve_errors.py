"""Every bad request gets a 4xx `{"error": "<one line>"}`, and the server keeps serving."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from tests.serve.conftest import UPLOAD_LIMIT
from tests.serve.served import Server, multipart, request


@pytest.fixture
def png(query_images: list[Path]) -> bytes:
    return query_images[0].read_bytes()


def _still_serving(server: Server, png: bytes) -> None:
    reply = server.search_image(png, "?k=2")
    assert reply.status == 200 and len(reply.json()["hits"]) == 2


def _bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height pixels, with a few bytes of data: what a
    decompression bomb looks like before it is decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(("query", "payload", "status", "words"), [
    ("?k=0", None, 400, "k must be between 1 and"),
    ("?k=101", None, 400, "k must be between 1 and 100"),
    ("?k=abc", None, 400, "k must be an integer"),
    ("?k=1&k=2", None, 400, "given 2 times"),
    ("?mode=pixels", None, 400, "unknown mode 'pixels'"),
    ("?scanner=GE", None, 400, "unknown filter column 'scanner'"),
    ("?where=%7Bnot-json", None, 400, "'where' must be a JSON object"),
    ("", {"text": ""}, 400, "empty"),
    ("", {"text": "   "}, 400, "empty"),
    ("", {"text": 3}, 400, '"text" must be a string'),
    ("", {}, 400, 'needs "text"'),
    ("", {"text": "a", "case": "b"}, 404, "no case 'b'"),  # text steers the case
    ("", {"text": "chest", "k": 0}, 400, "k must be between"),
    ("", {"text": "chest", "mode": "both"}, 400, "unknown mode 'both'"),
    ("", {"text": "chest", "where": {"scanner": "GE"}}, 400, "unknown filter column 'scanner'"),
    ("", {"text": "chest", "where": ["modality"]}, 400, "'where' must be a JSON object"),
    ("", {"text": "chest", "modality": {"a": 1}}, 400, "filter 'modality' takes a value"),
    ("?k=3", {"text": "chest", "k": 4}, 400, "both the query string and the JSON body"),
    ("", {"case": "no-such-case"}, 404, "no case 'no-such-case'"),
])  # fmt: skip
def test_bad_search_parameters(
    server: Server, png: bytes, query: str, payload: object, status: int, words: str
) -> None:
    if payload is None:
        reply = server.search_image(png, query)
    else:
        reply = server.post_json("/v1/search" + query, payload)
    assert reply.status == status and words in reply.error, reply.body
    _still_serving(server, png)


def test_bad_bodies(server: Server, png: bytes) -> None:
    url = f"{server.url}/v1/search"
    json_type = {"content-type": "application/json"}
    cases = [
        (request(url, "POST", body=b"hi", headers={"content-type": "text/plain"}), 415, "type"),
        (request(url, "POST", body=b"{not json", headers=json_type), 400, "not valid JSON"),
        (request(url, "POST", body=b"[1, 2]", headers=json_type), 400, "must be an object"),
        (request(url, "POST", body=b"", headers={}), 415, "content type"),
    ]
    body, headers = multipart(png)
    renamed = body.replace(b'name="image"', b'name="picture"')
    cases.append(
        (request(url, "POST", body=renamed, headers=headers), 400, "multipart field 'image'")
    )
    for reply, status, words in cases:
        assert reply.status == status and words in reply.error, reply.body
    _still_serving(server, png)


def test_uploads_that_are_not_images(server: Server, png: bytes) -> None:
    for data, words in [
        (b"", "empty"),
        (b"%PDF-1.4 definitely not an image", "cannot decode"),
        (png[: len(png) // 2], "cannot decode"),  # truncated PNG
    ]:
        reply = server.search_image(data)
        assert reply.status == 400 and words in reply.error, reply.body
        assert "send a PNG, JPEG or DICOM image" in reply.error or words == "empty"
    _still_serving(server, png)


def test_decompression_bomb_is_refused_without_decoding(server: Server, png: bytes) -> None:
    bomb = _bomb_png(70_000, 70_000)  # 4.9 gigapixels in 100 bytes
    assert len(bomb) < 200
    reply = server.search_image(bomb)
    assert reply.status == 400 and "pixels" in reply.error, reply.body
    _still_serving(server, png)


def test_oversized_upload_is_refused_by_its_length(server: Server, png: bytes) -> None:
    noise = Image.effect_noise((400, 400), 100).convert("RGB")
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    assert len(buffer.getvalue()) > UPLOAD_LIMIT
    reply = server.search_image(buffer.getvalue())
    assert reply.status == 413 and f"{UPLOAD_LIMIT:,} bytes" in reply.error
    _still_serving(server, png)


def test_chunked_upload_is_cut_once_past_the_limit(server: Server, png: bytes) -> None:
    """No Content-Length: the server counts while reading and answers 413 before the end."""
    body, headers = multipart(b"", "big.png")
    head = body[: body.index(b"\r\n\r\n") + 4]  # the part's headers; the file bytes follow
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    piece, total, sent = b"x" * 65536, 50 * UPLOAD_LIMIT, 0
    status, error = None, ""
    try:
        connection.putrequest("POST", "/v1/search")
        connection.putheader("content-type", headers["content-type"])
        connection.putheader("transfer-encoding", "chunked")
        connection.endheaders()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            connection.send(b"%x\r\n%s\r\n" % (len(head), head))
            while sent < total:
                connection.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
            connection.send(b"0\r\n\r\n")
        with contextlib.suppress(ConnectionError, http.client.HTTPException):
            reply = connection.getresponse()
            status, error = reply.status, json.loads(reply.read())["error"]
    finally:
        connection.close()
    # answered 413, or cut off before all of the body was sent
    assert (status == 413 and "larger than" in error) or (status is None and sent < total)
    _still_serving(server, png)


def test_unknown_endpoint_and_method(server: Server) -> None:
    reply = server.get("/v1/nothing")
    assert reply.status == 404 and "no endpoint GET /v1/nothing" in reply.error
    reply = server.get("/v1/search")
    assert reply.status == 405 and "GET is not allowed" in reply.error


def test_caption_refusals(server: Server, png: bytes) -> None:
    body, headers = multipart(png)
    for query, words in (("?k=0", "k must be between"), ("?mode=images", "unknown parameter")):
        reply = request(f"{server.url}/v1/caption{query}", "POST", body=body, headers=headers)
        assert reply.status == 400 and words in reply.error
    reply = server.post_json("/v1/caption", {"text": "chest"})
    assert reply.status == 400 and "multipart field 'image'" in reply.error
    _still_serving(server, png)
