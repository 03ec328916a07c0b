"""medcap: retrieval-based captioning for radiology images."""

from __future__ import annotations

__version__ = "0.1.0"
