"""The package boundaries from DESIGN.md, checked on the import graph (AST) of src/medcap."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "medcap"

# package -> top-level modules it must never import (anywhere in the file).
FORBIDDEN: dict[str, set[str]] = {
    "types": {"medcap", "numpy", "torch", "faiss", "open_clip", "PIL", "pyarrow"},
    "config": {"numpy", "torch", "faiss", "open_clip", "PIL", "pyarrow", "medcap.data"},
    "errors": {"medcap", "numpy", "torch"},
    "data": {
        "torch",
        "open_clip",
        "faiss",
        "transformers",
        "peft",
        "streamlit",
        "medcap.encoder",
        "medcap.index",
        "medcap.retrieval",
        "medcap.generation",
    },
    "index": {
        "open_clip",
        "transformers",
        "peft",
        "streamlit",
        "medcap.encoder",
        "medcap.retrieval",
        "medcap.generation",
        "medcap.data",
    },
    "generation": {"medcap.index", "streamlit"},
    "evaluation": {"streamlit", "medcap.cli", "medcap.app"},
    "retrieval": {"streamlit", "transformers", "peft"},
    "encoder": {"faiss", "streamlit", "transformers", "peft", "medcap.index"},
}
# Heavy libraries that may only be imported inside functions (never at module level).
LAZY_ONLY = {"transformers", "peft", "streamlit"}


def _imports(tree: ast.AST) -> list[tuple[str, bool]]:
    """(module, at_module_level) for every import in a module."""
    found: list[tuple[str, bool]] = []
    top_level = {id(node) for node in getattr(tree, "body", [])}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, id(node) in top_level))
    return found


def _package_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _matches(module: str, banned: str) -> bool:
    return module == banned or module.startswith(banned + ".")


def test_import_boundaries_hold() -> None:
    violations = []
    for path in sorted(SRC.rglob("*.py")):
        package = _package_of(path)
        banned = FORBIDDEN.get(package, set())
        tree = ast.parse(path.read_text(), filename=str(path))
        for module, top in _imports(tree):
            if (
                package in {"types", "errors"}
                and module.startswith("medcap")
                or any(_matches(module, b) for b in banned if b != "medcap")
            ):
                violations.append(f"{path.relative_to(SRC)} imports {module}")
            if top and package not in {"app"} and any(_matches(module, m) for m in LAZY_ONLY):
                violations.append(f"{path.relative_to(SRC)} imports {module} at module level")
    assert violations == []


def test_cli_import_stays_light() -> None:
    code = (
        "import sys, medcap.cli; "
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'streamlit', 'open_clip', 'faiss', "
        "'datasets') if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_checked_packages_exist(package: str) -> None:
    assert (SRC / package).exists() or (SRC / f"{package}.py").exists()
