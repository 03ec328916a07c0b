"""Local copies of hub repositories, for machines that cannot reach the hub.

- `bundle`: the folder `medcap fetch` writes (one subfolder per repository, a manifest of
  files, sizes, sha256 and revisions) and how hub ids resolve into it (`MEDCAP_BUNDLE`);
- `verify`: every file of a bundle checked against its manifest;
- `recipes`: the data files naming what a bundle holds (`recipes/*.toml`);
- `fetch`: the download itself (huggingface_hub, on a machine with internet);
- `folders`: checks of a local model folder (required files, truncated weights) that give
  one line naming the missing or damaged file before a library reads it.

Only the standard library at module level: every medcap package may use these.
"""

from __future__ import annotations

from medcap.snapshots.bundle import (
    BUNDLE_ENV,
    active_bundle,
    bundle_dataset_dir,
    bundle_model_dir,
    use_bundle,
)

__all__ = ["BUNDLE_ENV", "active_bundle", "bundle_dataset_dir", "bundle_model_dir", "use_bundle"]
