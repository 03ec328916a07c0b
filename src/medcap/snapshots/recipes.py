"""Fetch recipes: TOML data files naming the hub repositories a bundle holds.

A recipe is `recipes/<name>.toml` (or any `.toml` path) with a `description` and one
`[[repos]]` table per repository: `kind` (model | dataset), `repo` (org/name), `role`,
optional `revision` (default main), `include` (file patterns; default all files) and
`optional` (fetched only with `--with-data`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medcap.errors import InputError
from medcap.snapshots.bundle import KIND_FOLDERS, RepoKind

RECIPE_DIR = Path(__file__).parent / "recipes"
DEFAULT_REVISION = "main"


@dataclass(frozen=True)
class RecipeRepo:
    """One repository of a recipe."""

    kind: RepoKind
    repo: str
    role: str
    revision: str = DEFAULT_REVISION
    include: tuple[str, ...] = ()  # glob patterns of the files to fetch; () = every file
    optional: bool = False  # fetched only on request (the large datasets)


@dataclass(frozen=True)
class Recipe:
    """A named list of repositories to fetch together."""

    name: str
    description: str
    repos: tuple[RecipeRepo, ...]

    def selected(self, *, with_optional: bool) -> list[RecipeRepo]:
        """The repositories to fetch (the optional ones only when asked for)."""
        return [r for r in self.repos if with_optional or not r.optional]


def _repo(raw: Any, where: str) -> RecipeRepo:
    if not isinstance(raw, dict):
        raise InputError(f"{where}: each [[repos]] entry must be a table")
    kind, repo = raw.get("kind"), raw.get("repo")
    if kind not in KIND_FOLDERS:
        raise InputError(
            f"{where}: repos kind must be one of {', '.join(KIND_FOLDERS)}, got {kind!r}"
        )
    if not isinstance(repo, str) or repo.count("/") != 1 or not all(repo.split("/")):
        raise InputError(f"{where}: repos repo must be org/name, got {repo!r}")
    include = raw.get("include", [])
    if not isinstance(include, list) or not all(isinstance(p, str) for p in include):
        raise InputError(f"{where}: include of {repo} must be a list of file patterns")
    return RecipeRepo(
        kind=kind,
        repo=repo,
        role=str(raw.get("role", "")),
        revision=str(raw.get("revision", DEFAULT_REVISION)),
        include=tuple(include),
        optional=bool(raw.get("optional", False)),
    )


def read_recipe(path: Path) -> Recipe:
    """Parse one recipe file; InputError naming the file for anything malformed."""
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{path}: cannot read recipe ({exc})") from None
    repos = raw.get("repos")
    if not isinstance(repos, list) or not repos:
        raise InputError(f"{path}: a recipe needs at least one [[repos]] table")
    return Recipe(
        name=path.stem,
        description=str(raw.get("description", "")),
        repos=tuple(_repo(r, str(path)) for r in repos),
    )


def list_recipes() -> list[Recipe]:
    """The recipes shipped with medcap, by name."""
    return [read_recipe(p) for p in sorted(RECIPE_DIR.glob("*.toml"))]


def load_recipe(name: str) -> Recipe:
    """A shipped recipe by name, or a recipe file by path."""
    path = Path(name).expanduser()
    if name.endswith(".toml") or path.is_file():
        if not path.is_file():
            raise InputError(f"recipe file {name} does not exist")
        return read_recipe(path)
    shipped = RECIPE_DIR / f"{name}.toml"
    if not shipped.is_file():
        names = ", ".join(p.stem for p in sorted(RECIPE_DIR.glob("*.toml")))
        raise InputError(f"unknown recipe {name!r}; known: {names} (or a path to a .toml recipe)")
    return read_recipe(shipped)
