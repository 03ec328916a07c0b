"""Which search back-end serves an index on a device: pure rules, no FAISS or torch import.

faiss-gpu copies flat and IVF indexes to one GPU, but has no HNSW and no 4-bit fast-scan PQ
(the `IVF...,PQ...x4fs` indexes medcap's planner builds for large collections); the exact
torch search (matmul + topk) needs the raw vectors, i.e. a flat index. Where neither
applies the index is searched on the CPU, and the log and `medcap index info` say why.
"""

from __future__ import annotations

from dataclasses import dataclass

# faiss-gpu's k-selection kernels take k (and nprobe) up to this (GPU_MAX_SELECTION_K).
GPU_MAX_K = 2048


@dataclass(frozen=True)
class SearchPlan:
    """The back-end chosen for one index: faiss-gpu, torch (exact, CUDA) or faiss-cpu."""

    backend: str  # faiss-gpu | torch | faiss-cpu
    gpu: int | None  # CUDA ordinal for faiss-gpu and torch
    note: str = ""  # why the CPU serves an index on a GPU machine ("" otherwise)


def faiss_gpu_gap(index_type: str, factory: str) -> str:
    """Why faiss-gpu cannot hold this index ("" when it can)."""
    if index_type == "hnsw" or "HNSW" in factory:
        return "faiss-gpu has no HNSW index"
    if "x4fs" in factory:
        return f"faiss-gpu has no 4-bit fast-scan PQ ({factory})"
    return ""


def gpu_ordinal(device: str) -> int:
    """The CUDA ordinal a device setting names: `cuda:N` -> N; auto and cuda -> 0."""
    _, _, index = device.partition(":")
    return int(index) if index.isdigit() else 0


def plan_search(
    index_type: str, factory: str, device: str, *, faiss_gpus: int, cuda: bool
) -> SearchPlan:
    """Pick the back-end for `device` ("auto", "cpu", "cuda", "cuda:N").

    Order on a GPU: faiss-gpu when installed and it supports the index, else the exact
    torch search for flat indexes when CUDA exists, else faiss on the CPU (with a note).
    """
    if device == "cpu":
        return SearchPlan("faiss-cpu", None)
    ordinal = gpu_ordinal(device)
    gap = faiss_gpu_gap(index_type, factory)
    if faiss_gpus > ordinal and not gap:
        return SearchPlan("faiss-gpu", ordinal)
    if index_type == "flat" and cuda:
        return SearchPlan("torch", ordinal)
    if not faiss_gpus and not cuda:
        return SearchPlan("faiss-cpu", None, "no GPU" if device != "auto" else "")
    why = gap or "faiss-gpu is not installed"
    return SearchPlan("faiss-cpu", None, f"{why}, and the exact torch search needs a flat index")


def describe_search(index_type: str, factory: str, *, faiss_gpus: int) -> str:
    """One line for `medcap index info`: where searches of this index can run."""
    gap = faiss_gpu_gap(index_type, factory)
    gpu = "faiss-gpu" if not gap else ""
    if index_type == "flat":
        gpu = f"{gpu} or exact torch matmul" if gpu else "exact torch matmul"
    installed = f"faiss-gpu sees {faiss_gpus} GPU(s)" if faiss_gpus else "faiss-gpu not installed"
    if not gpu:
        return f"CPU only: {gap}, and the exact torch search needs a flat index ({installed})"
    return f"on a GPU: {gpu}; else faiss on the CPU ({installed})"


def gpu_can_answer(k: int) -> bool:
    """Whether faiss-gpu can return `k` results (or candidates) in one search."""
    return k <= GPU_MAX_K
