"""Item 10: the README's "Security and data safety" section states the configured limits."""

from __future__ import annotations

import re
from pathlib import Path

from medcap.config import DEFAULTS

README = Path(__file__).resolve().parents[2] / "README.md"


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Security and data safety\n(.*?)^## ", text, re.S | re.M)
    assert match, "README has no 'Security and data safety' section"
    return " ".join(match.group(1).split())


def test_readme_security_section_matches_the_defaults() -> None:
    section = _section()
    assert f"binds {DEFAULTS.app.host}" in section
    assert f"({DEFAULTS.data.max_image_pixels / 1e6:.0f} Mpx;" in section
    assert f"({DEFAULTS.app.max_upload_pixels / 1e6:.0f} Mpx)" in section
    assert f"({DEFAULTS.app.max_upload_mb} MB)" in section
    for flag in ("--keep-columns", "--reports DIR", "--allow-outside-paths", "--encoding"):
        assert flag in section, flag
    for word in ("weights_only=True", "safetensors", "PatientName", "SIGTERM"):
        assert word in section, word
