"""Pillow decoding in DataLoader workers: one stacked uint8 tensor per batch, workers that
persist across calls, and few file descriptors however large the batch."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import torch
from PIL import Image

from medcap.config import DEFAULTS, replace_set
from medcap.encoder import load_encoder
from medcap.encoder.decode import ImageDecoder, uint8_transform
from medcap.types import ImageRef, Record
from tests.encoder.images import encode


class WorkerPid:
    """A transform that returns the id of the process that ran it, as a (1, 1, 1) tensor."""

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return torch.full((1, 1, 1), os.getpid(), dtype=torch.int64)


def _records(n: int, start: int = 0) -> list[Record]:
    blob = encode(Image.fromarray(np.full((8, 8), 128, dtype=np.uint8)), "PNG")
    return [
        Record(f"r{i}", ImageRef(path=f"r{i}.png", data=blob), "c") for i in range(start, start + n)
    ]


def test_workers_stack_uint8_batches_in_order(tiny_encoder: Any) -> None:
    decoder = ImageDecoder(uint8_transform(tiny_encoder.preprocess), num_workers=2)
    records = _records(7)
    records[3] = Record("bad", ImageRef(path="bad.png", data=b"\x89PNG broken"), "c")
    batches = list(decoder.batches(records, batch_size=3))
    decoder.close()
    assert [b.indices for b in batches] == [[0, 1, 2], [4, 5], [6]]
    assert [[i for i, _ in b.failures] for b in batches] == [[], [3], []]
    for batch in batches:
        assert isinstance(batch.pixels, torch.Tensor) and batch.pixels.dtype == torch.uint8
        assert batch.pixels.shape == (len(batch.indices), 3, 64, 64)


def test_worker_processes_persist_across_calls() -> None:
    decoder = ImageDecoder(WorkerPid(), num_workers=2)
    try:
        first = {int(p) for b in decoder.batches(_records(8), batch_size=2) for p in b.pixels}  # type: ignore[union-attr]
        second = {
            int(p)
            for b in decoder.batches(_records(6, start=100), batch_size=2)
            for p in b.pixels  # type: ignore[union-attr]
        }
    finally:
        decoder.close()
    assert len(first) == 2 and os.getpid() not in first
    assert second == first  # the same two workers decoded the second call's records


def test_encoder_keeps_one_decoder_for_every_call() -> None:
    encoder = load_encoder(
        "medcap-tiny", device="cpu", cfg=replace_set(DEFAULTS.encoder, num_workers=2)
    )
    try:
        kept, _, _, _ = encoder.encode_cases(_records(5), batch_size=2)
        decoder = encoder._decoder
        kept_again, _, _, _ = encoder.encode_cases(_records(3, start=50), batch_size=2)
        assert decoder is not None and encoder._decoder is decoder
        assert [r.image_id for r in kept_again] == ["r50", "r51", "r52"] and len(kept) == 5
    finally:
        encoder.close()


def test_large_batches_need_few_file_descriptors(tmp_path: Any) -> None:
    """Batches of 512 images in 2 workers under a 128-descriptor limit: a tensor per image
    (one shared-memory descriptor each) ran out of descriptors; a stacked batch needs one."""
    script = textwrap.dedent(
        """
        import resource, sys
        import numpy as np
        from PIL import Image
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))
        from torchvision.transforms import PILToTensor
        from medcap.encoder.decode import ImageDecoder
        from medcap.types import ImageRef, Record
        from tests.encoder.images import encode
        blob = encode(Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)), "PNG")
        records = [Record(str(i), ImageRef(data=blob), "c") for i in range(2048)]
        decoder = ImageDecoder(PILToTensor(), num_workers=2)
        total = sum(len(b.indices) for b in decoder.batches(records, batch_size=512))
        decoder.close()
        print("decoded", total)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=240, cwd=os.getcwd()
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "decoded 2048" in done.stdout
