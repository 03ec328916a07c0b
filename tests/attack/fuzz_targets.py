"""Property-based fuzzing of every dataset reader and of `load_image` (run in a subprocess).

`python -m tests.attack.fuzz_targets TARGET WORKDIR` feeds random bytes, truncations and bit
flips of valid inputs to one target and checks that each gives a correct result or a
one-line MedcapError, never another exception. It prints one JSON line with the peak RSS
growth in MB over the run, measured after a warm-up on the valid input (ru_maxrss is a
process-wide peak, so each target runs in a fresh process). test_attack_fuzz.py runs them.
"""

from __future__ import annotations

import csv
import io
import json
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medcap.data import load_image, open_dataset
from medcap.errors import MedcapError
from medcap.types import ImageRef

EXAMPLES = int(os.environ.get("MEDCAP_FUZZ_EXAMPLES", "200"))
PIXEL_LIMIT = 1 << 22  # 4 Mpx: a flipped header bit may declare any size up to the limit
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=os.environ.get("MEDCAP_FUZZ_RANDOM") is None,  # CI: the same examples each run
    suppress_health_check=list(HealthCheck),
)


def mutations(valid: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes, truncations, bit flips and spliced garbage of `valid` (and `valid`)."""

    def flip(positions: list[int]) -> bytes:
        data = bytearray(valid)
        for bit in positions:
            data[bit // 8] ^= 1 << (bit % 8)
        return bytes(data)

    def splice(args: tuple[int, bytes]) -> bytes:
        at, junk = args
        return valid[:at] + junk + valid[at + len(junk) :]

    bits = st.integers(0, len(valid) * 8 - 1)
    return st.one_of(
        st.just(valid),
        st.binary(max_size=2048),
        st.integers(0, len(valid)).map(lambda n: valid[:n]),
        st.lists(bits, min_size=1, max_size=12).map(flip),
        st.tuples(st.integers(0, len(valid)), st.binary(min_size=1, max_size=64)).map(splice),
    )


def expect_one_line(action: Callable[[], Any]) -> Any:
    """The result of `action`, or None when it raised a one-line MedcapError."""
    try:
        return action()
    except MedcapError as exc:
        assert "\n" not in str(exc) and str(exc).strip(), repr(str(exc))
        return None


# ---- valid inputs ------------------------------------------------------------------------


def _png(mode: str) -> bytes:
    import numpy as np
    from PIL import Image

    pixels = (np.arange(24 * 16 * 4) % 251).astype(np.uint8)
    image = Image.fromarray(pixels.reshape(16, 24, 4)).convert(mode)
    buf = io.BytesIO()
    image.save(buf, "PNG" if mode != "RGB" else "JPEG")
    return buf.getvalue()


def _dicom() -> bytes:
    import numpy as np
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["medcap-fuzz"])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("f.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 12, 10, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 1000, 2000
    ds.PixelData = (np.arange(120, dtype=np.uint16) * 30).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


VALID_IMAGES: dict[str, Callable[[], bytes]] = {
    "png": lambda: _png("L"),
    "rgba-png": lambda: _png("RGBA"),
    "jpeg": lambda: _png("RGB"),
    "dicom": _dicom,
}


# ---- targets -----------------------------------------------------------------------------


def fuzz_images(workdir: Path) -> Callable[[], None]:
    """load_image on mutated PNG, JPEG and DICOM bytes."""
    valid = {name: make() for name, make in VALID_IMAGES.items()}
    decoded = {
        name: load_image(ImageRef(path=f"x.{name}", data=data)) for name, data in valid.items()
    }
    names = sorted(valid)

    @SETTINGS
    @given(st.sampled_from(names).flatmap(lambda n: st.tuples(st.just(n), mutations(valid[n]))))
    def run(case: tuple[str, bytes]) -> None:
        name, data = case
        ref = ImageRef(path=f"x.{name}", data=data)
        image = expect_one_line(lambda: load_image(ref, max_pixels=PIXEL_LIMIT))
        if image is not None:
            assert image.mode == "RGB" and image.width > 0 and image.height > 0
            assert image.width * image.height <= PIXEL_LIMIT
            if data == valid[name]:
                assert image.tobytes() == decoded[name].tobytes()

    return run


def _check_dataset(source: Path, expected: list[tuple[str, str]] | None) -> None:
    """Open and read every split; the records must be well formed (or a one-line error)."""

    def read() -> list[tuple[str, str]]:
        dataset = open_dataset(source)
        out = []
        for split in dataset.splits():
            records = list(dataset.records(split))
            assert dataset.count(split) == len(records)
            for r in records:
                assert isinstance(r.image_id, str) and r.image_id.strip()
                assert isinstance(r.caption, str) and r.caption.strip()
                assert isinstance(r.image, ImageRef) and all(isinstance(c, str) for c in r.cuis)
                out.append((r.image_id, r.caption))
            for r in records[:2]:  # the image references the reader made are usable
                expect_one_line(lambda r=r: load_image(r.image, max_pixels=PIXEL_LIMIT))
        dataset.fingerprint()
        return sorted(out)

    found = expect_one_line(read)
    if expected is not None:
        assert found == expected


def _table_target(
    workdir: Path, name: str, valid: bytes, write_rest: Callable[[Path], None]
) -> Callable[[], None]:
    """A target that rewrites one table file of a dataset folder with mutated bytes."""
    template = workdir / "template"
    write_rest(template)
    (template / name).write_bytes(valid)
    expected = _read_expected(template)
    counter = iter(range(10**9))

    @SETTINGS
    @given(mutations(valid))
    def run(data: bytes) -> None:
        folder = workdir / f"case-{next(counter)}"
        shutil.copytree(template, folder, symlinks=True)
        (folder / name).write_bytes(data)
        try:
            _check_dataset(folder, expected if data == valid else None)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    return run


def _read_expected(folder: Path) -> list[tuple[str, str]]:
    dataset = open_dataset(folder)
    return sorted((r.image_id, r.caption) for s in dataset.splits() for r in dataset.records(s))


def _images(folder: Path, sub: str, names: list[str]) -> None:
    (folder / sub).mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / sub / f"{name}.png").write_bytes(_png("L"))


def fuzz_parquet(workdir: Path) -> Callable[[], None]:
    """The parquet layout: a phantom shard with mutated bytes."""
    from medcap.data import build_phantoms

    source = build_phantoms(workdir / "phantoms", n=6, seed=1, image_size=32)
    shard = sorted((source / "data").glob("train-*.parquet"))[0]
    return _table_target(
        workdir, "data/train-00000-of-00001.parquet", shard.read_bytes(),
        lambda folder: (folder / "data").mkdir(parents=True),
    )  # fmt: skip


def fuzz_release(workdir: Path) -> Callable[[], None]:
    """The ROCOv2 release layout: a mutated `train_captions.csv`."""
    ids = ["ROCOv2_2023_train_000001", "ROCOv2_2023_train_000003", "ROCOv2_2023_train_000004"]

    def write_rest(folder: Path) -> None:
        _images(folder, "train", ids)
        (folder / "train_concepts.csv").write_text(
            "ID,CUIs\n" + "".join(f"{i},C0040405;C0817096\n" for i in ids)
        )

    captions = "ID,Caption\n" + "".join(
        f'{i},"CT of the chest, case {n}."\n' for n, i in enumerate(ids)
    )
    return _table_target(workdir, "train_captions.csv", captions.encode(), write_rest)


def _generic(workdir: Path, fmt: str) -> Callable[[], None]:
    rows = [
        {"image": f"images/c{i}.png", "image_id": f"c{i}", "caption": f"MRI of the head, case {i}.",
         "cui": "C0024485", "split": ["train", "validation", "test"][i % 3], "modality": "MRI"}
        for i in range(4)
    ]  # fmt: skip
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        valid, name = buf.getvalue().encode(), "captions.csv"
    else:
        valid, name = "".join(json.dumps(r) + "\n" for r in rows).encode(), "metadata.jsonl"
    return _table_target(
        workdir, name, valid, lambda f: _images(f, "images", [f"c{i}" for i in range(4)])
    )


TARGETS: dict[str, Callable[[Path], Callable[[], None]]] = {
    "images": fuzz_images,
    "parquet": fuzz_parquet,
    "release": fuzz_release,
    "csv": lambda w: _generic(w, "csv"),
    "jsonl": lambda w: _generic(w, "jsonl"),
}


def main(target: str, workdir: Path) -> None:
    """Warm up on the valid input, run the target, print the peak RSS growth (MB) as JSON."""
    run = TARGETS[target](workdir)
    before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    run()
    growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kb) / 1024
    print(json.dumps({"target": target, "examples": EXAMPLES, "peak_growth_mb": growth_mb,
                      "seconds": round(time.perf_counter() - start, 2)}))  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
