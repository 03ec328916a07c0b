"""The package boundaries from DESIGN.md, checked on the import graph (AST) of src/medcap.

An allowlist: each package names the medcap packages and the third-party libraries it may
import, anywhere in its files (TYPE_CHECKING blocks and function bodies included). The
library (`data`, `encoder`, `index`, `retrieval`, `generation`, `evaluation`) never imports
the programs (`train`, `runs`, `cli`, `app`) or the facade (`api`); programs call down.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "medcap"

# any package may use these (checksums and locking: artifact checks and output locks)
BASE = {"config", "errors", "types", "atomic", "clock", "offline", "checksums", "locking"}
# local copies of hub repositories (bundles, model folder checks): any package may use them
BASE |= {"snapshots"}
LIBRARY = {"data", "encoder", "index", "retrieval", "generation", "evaluation"}
PROGRAMS = {"train", "runs", "dist", "cli", "app", "serve"}

# package or top-level module -> (medcap packages/modules it may import, third-party libraries);
# "package.module" allows that one module of a package (train may use runs.identity, the
# run identities that caption runs and training runs share, but nothing else of runs).
ALLOWED: dict[str, tuple[set[str], set[str]]] = {
    "types": (set(), set()),
    "errors": (set(), set()),
    "clock": (set(), set()),
    "offline": (set(), set()),
    "atomic": (set(), set()),
    "checksums": (set(), {"xxhash"}),
    "locking": ({"errors"}, set()),
    "snapshots": ({"errors", "atomic", "clock", "offline", "checksums"}, {"huggingface_hub"}),
    "config": ({"errors"}, set()),
    "config_files": ({"config", "errors"}, set()),
    "devices": ({"errors"}, {"torch"}),
    "data": (BASE, {"PIL", "numpy", "pyarrow", "datasets", "pydicom"}),
    "index": (BASE | {"devices"}, {"numpy", "faiss", "pyarrow", "tqdm", "torch"}),
    "encoder": (
        BASE | {"data", "devices"},
        {
            "torch",
            "torchvision",
            "open_clip",
            "numpy",
            "PIL",
            "tqdm",
            "huggingface_hub",
            "transformers",  # open_clip's HF text towers: is a local text config usable
        },
    ),
    "retrieval": (BASE | {"data", "encoder", "index", "devices"}, {"numpy", "PIL"}),
    "evaluation": (
        BASE,
        {
            "numpy",
            "matplotlib",
            "pyarrow",
            "pycocoevalcap",
            "bert_score",
            "huggingface_hub",
            "transformers",  # BERTScore: is the model's architecture known
        },
    ),
    "generation": (
        BASE | {"data", "evaluation", "devices"},
        {"torch", "transformers", "peft", "PIL", "numpy"},
    ),
    "api": (BASE | LIBRARY | {"runs", "dist"}, set()),
    "__init__": (BASE | LIBRARY | {"api", "runs", "client"}, set()),
    "train": (
        BASE | LIBRARY | {"devices", "runs.identity"},
        {
            "torch",
            "open_clip",
            "numpy",
            "PIL",
            "tqdm",
            "matplotlib",
            "peft",
            "safetensors",
            "tensorboard",
        },
    ),
    "runs": (BASE | LIBRARY | {"train"}, {"tqdm"}),
    # the Ray engines: the only package that may import ray
    "dist": (BASE | LIBRARY | {"runs"}, {"ray", "torch", "numpy"}),
    "app": (BASE | LIBRARY | {"config_files", "client"}, {"streamlit", "PIL", "numpy"}),
    "serve": (
        BASE | LIBRARY | {"api", "client"},
        {"fastapi", "starlette", "uvicorn", "prometheus_client", "pydantic", "PIL", "numpy"}
        | {"torch"},
    ),
    "client": (BASE | {"generation", "data"}, set()),
    "cli": (
        BASE | LIBRARY | {"api", "runs", "dist", "train", "app", "serve", "client", "config_files"},
        {"typer"},
    ),
    "__main__": ({"cli"}, set()),
}
# package -> medcap packages it may only import through their public package (__init__)
PUBLIC_ONLY: dict[str, set[str]] = {"app": {"index", "retrieval"}}
# Heavy (or optional) libraries that may only be imported inside functions, never at module
# level; a dotted name covers that module and its submodules.
LAZY_ONLY = {"transformers", "peft", "streamlit", "tensorboard", "torch.utils.tensorboard"}
LAZY_EXEMPT = {"app"}  # the Streamlit pages are scripts


def _imports(tree: ast.AST) -> Iterator[tuple[str, bool]]:
    """(module, at module level) for every import; `from medcap import x` gives medcap.x."""
    top_level = {id(node) for node in getattr(tree, "body", [])}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, id(node) in top_level
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "medcap":  # the root: only its version is not a lazy import
                for alias in node.names:
                    if alias.name != "__version__":
                        yield f"medcap.{alias.name}", id(node) in top_level
            else:
                yield node.module, id(node) in top_level


def _unit(path: Path, root: Path) -> str:
    """The package (or top-level module) a source file belongs to."""
    return path.relative_to(root).parts[0].removesuffix(".py")


def check_imports(root: Path) -> list[str]:
    """Every import under `root` (a medcap source tree) that the rules above forbid."""
    violations = []
    for path in sorted(root.rglob("*.py")):
        unit = _unit(path, root)
        where = path.relative_to(root)
        if unit not in ALLOWED:
            violations.append(f"{where}: package {unit!r} has no entry in ALLOWED")
            continue
        own, third_party = ALLOWED[unit]
        for module, top in _imports(ast.parse(path.read_text(), filename=str(path))):
            parts = module.split(".")
            if parts[0] == "medcap":
                target = parts[1] if len(parts) > 1 else "medcap"
                one_module = ".".join(parts[1:3]) in own
                if target != unit and target not in own and not one_module:
                    violations.append(f"{where} imports {module} ({unit} may not use {target})")
                elif target in PUBLIC_ONLY.get(unit, set()) and len(parts) > 2:
                    violations.append(f"{where} imports {module}: use medcap.{target} itself")
            elif parts[0] not in sys.stdlib_module_names and parts[0] not in third_party:
                violations.append(f"{where} imports {module} (not allowed in {unit})")
            lazy_only = any(module == m or module.startswith(m + ".") for m in LAZY_ONLY)
            if top and unit not in LAZY_EXEMPT and lazy_only:
                violations.append(f"{where} imports {module} at module level")
    return violations


def test_import_boundaries_hold() -> None:
    assert check_imports(SRC) == []


@pytest.mark.parametrize(
    ("unit", "source", "expected"),
    [
        ("index/bad.py", "from medcap.retrieval import Retriever\n", "index may not use retrieval"),
        ("evaluation/bad.py", "def f():\n    from medcap.data import open_dataset\n", "data"),
        ("generation/bad.py", "from medcap.index.store import IndexDir\n", "use index"),
        ("retrieval/bad.py", "from medcap.runs.caption import caption_split\n", "runs"),
        ("data/bad.py", "import open_clip\n", "open_clip (not allowed in data)"),
        ("generation/bad.py", "import transformers\n", "at module level"),
        ("train/bad.py", "from torch.utils.tensorboard import SummaryWriter\n", "module level"),
        ("train/bad.py", "from medcap.runs.caption import caption_split\n", "train may not use"),
        ("app/bad.py", "from medcap.index.shards import ShardVectors\n", "use medcap.index"),
        ("data/bad.py", "from medcap import open_index\n", "medcap.open_index"),
        ("newpkg/mod.py", "import os\n", "no entry in ALLOWED"),
    ],
)
def test_the_checker_catches_an_injected_wrong_way_import(
    tmp_path: Path, unit: str, source: str, expected: str
) -> None:
    root = tmp_path / "medcap"
    (root / unit).parent.mkdir(parents=True)
    (root / unit).write_text(source)
    (root / "types.py").write_text("from __future__ import annotations\n")
    found = check_imports(root)
    assert len(found) == 1 and expected in found[0], found


def test_every_package_is_listed() -> None:
    units = {_unit(p, SRC) for p in SRC.rglob("*.py")}
    assert units == set(ALLOWED)


def _backend_name_branches(path: Path, names: set[str]) -> list[str]:
    """Comparisons (==, !=, in) against a registered backend name in one file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                values = side.elts if isinstance(side, ast.Tuple | ast.List | ast.Set) else [side]
                for value in values:
                    if isinstance(value, ast.Constant) and value.value in names:
                        found.append(f"{path.relative_to(SRC)}:{node.lineno} {value.value!r}")
    return found


def test_nothing_outside_the_backends_branches_on_a_backend_name() -> None:
    from medcap.generation.backends import backend_names

    names = set(backend_names())
    backends = SRC / "generation" / "backends"
    found = [
        hit
        for path in sorted(SRC.rglob("*.py"))
        if backends not in path.parents
        for hit in _backend_name_branches(path, names)
    ]
    assert found == []


def test_cli_import_stays_light() -> None:
    code = (
        "import sys, medcap.cli; "
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'streamlit', 'open_clip', 'faiss', "
        "'datasets') if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("package", sorted(set(ALLOWED) - {"__init__", "__main__"}))
def test_checked_packages_exist(package: str) -> None:
    assert (SRC / package).exists() or (SRC / f"{package}.py").exists()
