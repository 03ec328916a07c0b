"""Phantoms: deterministic synthetic radiology cases with known attributes (the built-in dataset).

Each case is a modality-specific rendering of a body region with a finding at a known
location and size, and a ROCOv2-style caption written from those attributes.
"""

from __future__ import annotations

from medcap.data.phantoms.generate import build_phantoms, iter_phantom_records, split_counts

__all__ = ["build_phantoms", "iter_phantom_records", "split_counts"]
