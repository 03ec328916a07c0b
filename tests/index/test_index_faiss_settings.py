"""FAISS's global settings: importing medcap changes none; a search sets its own and restores it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import medcap

SRC = Path(medcap.__file__).resolve().parents[1]

PROBE = """
import faiss, numpy as np
before = faiss.cvar.distance_compute_blas_threshold
from medcap.index import faiss_ops
after_import = faiss.cvar.distance_compute_blas_threshold
index = faiss_ops.new_index("Flat", 8)
vectors = np.eye(8, dtype=np.float32)
faiss_ops.add_vectors(index, vectors)
seen = []
real_search = index.search
def spy(q, k):
    seen.append(faiss.cvar.distance_compute_blas_threshold)
    return real_search(q, k)
index.search = spy
scores, rows = faiss_ops.search(index, vectors[:2], 1)
after = faiss.cvar.distance_compute_blas_threshold
print(before, after_import, seen[0], after, rows.ravel().tolist())
"""


def test_faiss_blas_threshold_is_set_per_call_and_restored() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        timeout=120,
    ).stdout.split()
    before, after_import, during, after, rows = out[0], out[1], out[2], out[3], " ".join(out[4:])
    assert after_import == before != "1"  # importing medcap leaves FAISS as it was
    assert during == "1"  # medcap's searches always take the BLAS path
    assert after == before
    assert rows == "[0, 1]"
