"""Cases, thumbnails, the index summary, captions and the probes of a real server."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any
from urllib.parse import quote

from PIL import Image

from tests.serve.conftest import ODD_IDS
from tests.serve.served import Server, multipart, request


def _case_url(image_id: str) -> str:
    return f"/v1/cases/{quote(image_id, safe='')}"


def test_health_and_readiness(server: Server) -> None:
    assert server.get("/healthz").json() == {"status": "ok"}
    assert server.get("/readyz").json() == {"status": "ready"}


def test_case_details_match_the_index(server: Server, library_index: Any) -> None:
    image_id = library_index.index.image_ids()[3]
    reply = server.get(_case_url(image_id))
    assert reply.status == 200
    case, item = reply.json(), library_index.item(image_id)
    assert case["image_id"] == image_id and case["caption"] == item.caption
    assert case["cuis"] == list(item.cuis) and case["metadata"] == dict(item.metadata)
    assert case["thumbnail_url"] == _case_url(image_id) + "/thumbnail"
    assert "image_path" not in case  # the server's file layout is not the client's business


def test_ids_that_need_quoting_reach_their_own_case(server: Server, library_index: Any) -> None:
    for image_id in ODD_IDS:
        reply = server.get(_case_url(image_id))
        assert reply.status == 200, (image_id, reply.body)
        assert reply.json()["image_id"] == image_id
        assert reply.json()["caption"] == library_index.item(image_id).caption
        thumb = server.get(reply.json()["thumbnail_url"])
        assert thumb.status == 200 and thumb.headers["content-type"] == "image/jpeg"
        assert thumb.body == library_index.index.thumbnail(image_id)
    # "ünï/thumbnail" is a case, not the thumbnail of a case "ünï"
    assert server.get(_case_url("ünï")).status == 404


def test_odd_ids_come_back_quoted_in_search_hits(server: Server, phantom_dataset: Any) -> None:
    from medcap.data.images import load_image

    source = list(phantom_dataset.records("valid"))[1]  # indexed as ODD_IDS[1]
    buffer = io.BytesIO()
    load_image(source.image).save(buffer, format="PNG")
    reply = server.search_image(buffer.getvalue(), "?mode=images&k=2")
    top = reply.json()["hits"][0]
    assert top["image_id"] == ODD_IDS[1] and top["thumbnail_url"] == (
        "/v1/cases/%C3%BCn%C3%AF%2Fthumbnail/thumbnail"
    )
    assert server.get(top["thumbnail_url"]).status == 200


def test_thumbnail_is_a_jpeg_of_the_case(server: Server, library_index: Any) -> None:
    image_id = library_index.index.image_ids()[0]
    reply = server.get(_case_url(image_id) + "/thumbnail")
    assert reply.status == 200
    image = Image.open(io.BytesIO(reply.body))
    assert image.format == "JPEG" and max(image.size) <= 32


def test_missing_case_is_404_json(server: Server) -> None:
    for path in (_case_url("no-such-case"), _case_url("no-such-case") + "/thumbnail"):
        reply = server.get(path)
        assert reply.status == 404 and "no-such-case" in reply.error


def test_index_summary(server: Server, library_index: Any) -> None:
    summary = server.get("/v1/index").json()
    manifest = library_index.manifest
    assert summary["count"] == len(library_index) == manifest.count
    assert summary["encoder"]["fingerprint"] == manifest.fingerprint
    assert (
        summary["index_type"] == manifest.index.type
        and summary["created_at"] == manifest.created_at
    )
    modalities = sorted(set(library_index.column("modality")) - {""})
    assert summary["columns"]["modality"]["values"] == modalities
    assert summary["columns"]["size_cm"]["kind"] == "number"
    assert summary["caption_backend"]["name"] == "consensus"


def test_caption_equals_the_library(
    server: Server, library_index: Any, query_images: list[Path]
) -> None:
    import medcap

    path = query_images[0]
    body, headers = multipart(path.read_bytes())
    reply = request(f"{server.url}/v1/caption?k=4", "POST", body=body, headers=headers)
    assert reply.status == 200, reply.body
    answer = reply.json()
    [expected] = medcap.caption(library_index, [str(path)], k=4)
    assert answer["caption"] == expected.text and answer["backend"] == "consensus"
    assert answer["model"] == expected.model
    assert [h["image_id"] for h in answer["neighbours"]] == [
        h.image_id for h in expected.neighbours
    ]
    assert answer["prompt"] == {"text": expected.prompt.text, "template": expected.prompt.template}
    assert answer["took_ms"] > 0


def test_metrics_count_requests_batches_and_the_index(server: Server, library_index: Any) -> None:
    server.get("/healthz")
    server.get(_case_url("no-such-case"))
    text = server.metrics()
    assert 'medcap_requests_total{endpoint="/healthz",method="GET",status="200"}' in text
    assert 'endpoint="/v1/cases/{image_id}",method="GET",status="404"' in text
    assert "medcap_request_duration_seconds_bucket" in text
    assert f"medcap_index_cases {float(len(library_index))}" in text
    assert "medcap_ready 1.0" in text and 'medcap_batch_size_bucket{kind="image"' in text


def test_openapi_lists_every_endpoint(server: Server) -> None:
    paths = server.get("/openapi.json").json()["paths"]
    for path in ("/v1/search", "/v1/caption", "/v1/cases/{image_id}",
                 "/v1/cases/{image_id}/thumbnail", "/v1/index", "/healthz", "/readyz"):  # fmt: skip
        assert path in paths
    assert "multipart/form-data" in paths["/v1/search"]["post"]["requestBody"]["content"]
    assert server.get("/docs").status == 200


def test_each_request_is_logged_on_one_line_without_query_text(server: Server) -> None:
    secret = "zebra-unicorn-findings"
    assert server.post_json("/v1/search?k=2&modality=CT", {"text": secret}).status == 200
    log = server.log_text()
    [line] = [line for line in log.splitlines() if "POST /v1/search?k&modality " in line][-1:]
    assert " 200 " in line and line.endswith(" ms") and "=" not in line
    assert secret not in log
