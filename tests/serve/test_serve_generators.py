"""The caption backend is chosen when the service starts: a model-backed one (tiny Qwen2-VL
saved to a folder, as a real checkpoint would be) answers /v1/caption with its evidence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.serve.served import multipart, request, serving

pytestmark = pytest.mark.slow  # loads transformers in a server process


def test_qwen2vl_backend_from_a_model_folder(
    serve_index_dir: Path, phantom_dataset: Any, query_images: list[Path], tmp_path: Path
) -> None:
    from tests.support.tiny_generators import build_tiny_qwen2vl

    captions = [r.caption for r in list(phantom_dataset.records("train"))[:40]]
    model, processor = build_tiny_qwen2vl(captions)
    folder = tmp_path / "tiny-qwen2vl"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    settings = ("generation.max_new_tokens=4", "generation.device=cpu")
    args = ("--backend", "qwen2-vl", "--model", str(folder))
    with serving(serve_index_dir, tmp_path / "qwen.log", *args, settings=settings) as server:
        assert server.get("/v1/index").json()["caption_backend"] == {
            "name": "qwen2-vl",
            "model": str(folder),
        }
        body, headers = multipart(query_images[0].read_bytes())
        reply = request(f"{server.url}/v1/caption?k=3", "POST", body=body, headers=headers)
        assert reply.status == 200, reply.body
        answer = reply.json()
        assert answer["backend"] == "qwen2-vl" and answer["model"] == str(folder)
        assert isinstance(answer["caption"], str) and len(answer["neighbours"]) == 3
        assert all(h["caption"] in answer["prompt"]["text"] for h in answer["neighbours"])


def test_model_for_a_model_free_backend_fails_the_load_with_its_reason(
    serve_index_dir: Path, tmp_path: Path
) -> None:
    from tests.serve.served import wait_for

    args = ("--model", "some/model")  # the default backend, consensus, runs no model
    with serving(serve_index_dir, tmp_path / "bad.log", *args, ready=False) as server:

        def failed() -> bool:
            return bool(server.get("/readyz").json().get("status") == "failed")

        wait_for(failed, server, 120, "failed")
        assert "consensus backend uses no model" in server.get("/readyz").error
