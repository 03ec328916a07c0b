"""DICOM benchmarks: cases per second from a folder and from Orthanc (DICOMweb), and the
time of `index remove` for 1% of a 100,000-case index.

Sections:
  folder   1,000 single-frame 512x512 CT instances (16-bit, phantom pixels) in a folder,
           one case per instance. `read`: list + header checks + decode of every case
           (the dataset's records, images decoded as the encoder would get them);
           `build`: `medcap.build_index` with medcap-tiny on CPU, thumbnails on.
  orthanc  the same files uploaded to a real Orthanc on 127.0.0.1 (upload not timed), read
           and built through DICOMweb (QIDO-RS + WADO-RS, DicomConfig.workers retrievals
           at a time). Skipped with the reason where Orthanc is not installed.
  remove   a 100,000-case index of synthetic 512-d vectors (bench_index.SyntheticEncoder),
           then `remove_from_index` of 1,000 random cases; per index type (--types).

    .venv/bin/python benchmarks/bench_dicom.py [--n 1000] [--n-remove-index 100000]
        [--types flat,ivfpq,hnsw] [--sections folder,orthanc,remove]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.support: the DICOM writer and the Orthanc runner
RESULTS = Path(__file__).parent / "results"


def write_instances(out: Path, n: int, size: int = 512, per_series: int = 10) -> list[Path]:
    """`n` single-frame CT instances (`per_series` per series, 10 series per study)."""
    from tests.support.dicom_files import new_uid, phantom_pixels, write_instance

    images = [phantom_pixels(i, size)[0] for i in range(20)]  # reused: decoding costs the same
    files = []
    study = series = ""
    for i in range(n):
        if i % (per_series * 10) == 0:
            study = new_uid()
        if i % per_series == 0:
            series = new_uid()
        path = out / f"{i // 100:03d}" / f"{i:05d}.dcm"
        write_instance(path, study_uid=study, series_uid=series, sop_uid=new_uid(),
                       modality="CT", number=i % per_series + 1, pixels=images[i % 20])  # fmt: skip
        files.append(path)
    return files


def _rates(source: str, key: Path, n: int, work: Path, token: str | None = None) -> dict[str, Any]:
    import medcap
    from medcap.config import DEFAULTS, replace_set
    from medcap.data.dicom import DicomOptions
    from medcap.data.images import load_image
    from medcap.data.readers import open_dataset
    from medcap.encoder import load_encoder

    cfg = replace_set(DEFAULTS.dicom, unit="instance")

    def dataset() -> Any:
        return open_dataset(
            source, dicom=DicomOptions(pseudonym_key=str(key), cfg=cfg, token=token)
        )

    start = time.perf_counter()
    count = 0
    for record in dataset().records("train"):
        load_image(record.image)
        count += 1
    read_s = time.perf_counter() - start
    assert count == n, (count, n)
    encoder = load_encoder("medcap-tiny", device="cpu")
    out = work / "index"
    start = time.perf_counter()
    index = medcap.build_index(dataset(), out, model=encoder, overwrite=True)
    build_s = time.perf_counter() - start
    assert len(index) == n
    return {
        "cases": n,
        "read_s": round(read_s, 2),
        "read_cases_per_s": round(n / read_s, 1),
        "build_s": round(build_s, 2),
        "build_cases_per_s": round(n / build_s, 1),
        "workers": cfg.workers if source.startswith("dicomweb:") else 1,
    }


def section_folder(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    src = work / "dicom"
    write_instances(src, args.n)
    return _rates(str(src), work / "key", args.n, work)


def section_orthanc(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from tests.support.orthanc import orthanc_missing, running_orthanc

    missing = orthanc_missing()
    if missing:
        print(f"orthanc: skipped: {missing}")
        return {"skipped": missing}
    src = work / "dicom"
    files = sorted(src.rglob("*.dcm")) if src.exists() else write_instances(src, args.n)
    with running_orthanc(work / "orthanc") as orthanc:
        start = time.perf_counter()
        orthanc.upload(files)
        upload_s = time.perf_counter() - start
        result = _rates(f"dicomweb:{orthanc.dicomweb}", work / "key", args.n, work)
    result["upload_s"] = round(upload_s, 2)
    return result


def section_remove(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_index import SyntheticEncoder, _records

    from medcap.config import DEFAULTS, replace_set
    from medcap.index import build_index, open_index, remove_from_index

    out: dict[str, Any] = {}
    n = args.n_remove_index
    for kind in args.types.split(","):
        path = work / f"remove_{kind}"
        cfg = replace_set(DEFAULTS.index, index_type=kind, thumbnail_size=0)
        start = time.perf_counter()
        build_index(_records(n), SyntheticEncoder(512, "clustered"), path, cfg)
        build_s = time.perf_counter() - start
        ids = open_index(path, verify=False).image_ids()
        gone = list(np.random.default_rng(0).choice(ids, size=n // 100, replace=False))
        start = time.perf_counter()
        index, removed = remove_from_index(path, gone, verify=False)
        seconds = time.perf_counter() - start
        assert removed == n // 100 and len(index) == n - removed
        out[kind] = {
            "cases": n, "removed": removed, "remove_s": round(seconds, 2),
            "build_s": round(build_s, 1), "factory": index.manifest.index.factory,
        }  # fmt: skip
        print(f"remove {kind}: {removed} of {n} in {seconds:.2f} s")
        shutil.rmtree(path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--n-remove-index", type=int, default=100_000)
    parser.add_argument("--types", default="flat")
    parser.add_argument("--sections", default="folder,orthanc,remove")
    parser.add_argument("--out", default=str(RESULTS / "dicom.json"))
    args = parser.parse_args()
    os.environ.setdefault("MEDCAP_CACHE_DIR", tempfile.mkdtemp(prefix="medcap-bench-"))
    results: dict[str, Any] = {"machine": f"{os.cpu_count()} CPUs"}
    with tempfile.TemporaryDirectory(prefix="bench_dicom_") as tmp:
        work = Path(tmp)
        for name in args.sections.split(","):
            start = time.perf_counter()
            results[name] = globals()[f"section_{name}"](args, work)
            print(f"{name}: {json.dumps(results[name])} ({time.perf_counter() - start:.0f} s)")
    previous = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    previous.update(results)
    Path(args.out).write_text(json.dumps(previous, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
