"""Hub access for encoder weights: know at once when a fetch cannot work.

open_clip fetches `hf-hub:` models and pretrained tags through huggingface_hub (or a plain
URL for a few tags). Offline, those calls either fail after retries or hang on DNS, so
medcap checks first: weights already in the local cache load offline; anything else raises
OfflineFetchError naming the spec and what to pass instead.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path

from medcap.encoder.spec import EncoderSpec
from medcap.errors import OfflineFetchError, first_line
from medcap.offline import is_offline

log = logging.getLogger(__name__)

HUB_HOST = "huggingface.co"


def hub_reachable(timeout_s: float) -> bool:
    """Open a TCP connection to the hub within `timeout_s` (DNS included, in a thread)."""
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((HUB_HOST, 443), timeout=timeout_s):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return bool(result and result[0])


def _offline_message(spec: EncoderSpec, reason: str) -> str:
    return (
        f"cannot fetch encoder {spec.raw!r} from the hub ({reason}); pass a local checkpoint "
        "instead (a `medcap train` output such as runs/x/best.pt, an open_clip snapshot folder, "
        "NAME:path/to/weights.pt, or medcap-tiny), or a `medcap fetch` bundle (MEDCAP_BUNDLE)"
    )


def _hub_files(spec: EncoderSpec) -> list[tuple[str, str]]:
    """(repo, filename) pairs that must be cached for the spec to load offline."""
    import open_clip

    if spec.kind == "hub":
        return [(spec.name, "open_clip_config.json")]
    cfg = open_clip.get_pretrained_cfg(spec.name, spec.tag or "")
    hub = str(cfg.get("hf_hub", ""))
    if not hub:
        return []
    repo, filename = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub[:-1], "")
    return [(repo, filename or "open_clip_pytorch_model.bin")]


def _cached(repo: str, filename: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    names = [filename]
    if filename.endswith((".bin", ".pth")):
        names.insert(0, filename.rsplit(".", 1)[0] + ".safetensors")
    return any(isinstance(try_to_load_from_cache(repo, name), str) for name in names)


def _url_cached(spec: EncoderSpec) -> bool:
    import open_clip

    url = str(open_clip.get_pretrained_cfg(spec.name, spec.tag or "").get("url", ""))
    return bool(url) and (Path("~/.cache/clip").expanduser() / os.path.basename(url)).is_file()


def ensure_fetchable(spec: EncoderSpec, *, probe_timeout_s: float) -> bool:
    """Check that a hub spec or pretrained tag can load; return True when it must load offline.

    Raises OfflineFetchError at once when offline (by environment or a failed probe) and the
    weights are not already in the local cache. Local specs return False without a check.
    """
    if spec.kind == "builtin" and (spec.tag is None or Path(spec.tag).is_file()):
        return False
    if spec.kind not in ("builtin", "hub"):
        return False
    files = _hub_files(spec)
    cached = all(_cached(repo, name) for repo, name in files) if files else _url_cached(spec)
    if cached:
        return True  # load from the cache; no network needed
    if is_offline("models"):
        raise OfflineFetchError(
            _offline_message(spec, "offline mode (MEDCAP_OFFLINE or HF_HUB_OFFLINE) is set")
        )
    if not hub_reachable(probe_timeout_s):
        raise OfflineFetchError(_offline_message(spec, f"{HUB_HOST} is unreachable"))
    log.info("fetching encoder %s from the hub", spec.raw)
    return False


def fetch_failed(spec: EncoderSpec, exc: BaseException) -> OfflineFetchError:
    """Wrap a failed hub download as a one-line OfflineFetchError."""
    return OfflineFetchError(_offline_message(spec, f"fetch failed: {first_line(exc, 200)}"))
