"""`medcap fetch`: copy a recipe's models (and data) into one bundle folder, or check one.

On a machine with internet: `medcap fetch --recipe rocov2-biomedclip-qwen2vl --out BUNDLE`.
Copy BUNDLE to the offline machine, check it with `medcap fetch --verify BUNDLE`, and run
any command with `MEDCAP_BUNDLE=BUNDLE` (or `medcap --bundle BUNDLE ...`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medcap.errors import InputError


def _list() -> None:
    from medcap.snapshots.recipes import list_recipes

    for recipe in list_recipes():
        typer.echo(f"{recipe.name}: {recipe.description}")
        for repo in recipe.repos:
            note = " (with --with-data)" if repo.optional else ""
            typer.echo(f"  {repo.kind:<8}{repo.repo}  [{repo.role}]{note}")


def _verify(bundle: Path) -> None:
    from medcap.snapshots.verify import verify_bundle

    report = verify_bundle(bundle)
    for line in report.problems():
        typer.echo(line)
    if not report.ok:
        typer.echo(f"{len(report.problems())} problems in {bundle}; fetch it again", err=True)
        raise typer.Exit(1)
    typer.echo(f"ok: {report.checked} files in {bundle} match their sizes and sha256")


def _fetch(recipe_name: str, out: Path, with_data: bool) -> None:
    from medcap.snapshots.fetch import fetch_bundle
    from medcap.snapshots.recipes import load_recipe

    recipe = load_recipe(recipe_name)
    manifest = fetch_bundle(
        recipe,
        out,
        with_optional=with_data,
        on_repo=lambda item: typer.echo(f"fetching {item.kind} {item.repo} ({item.revision})"),
    )
    files = manifest.files()
    size_gb = sum(f.size for f in files) / 1e9
    typer.echo(
        f"bundle {out}: {len(manifest.repos)} repositories, {len(files)} files, {size_gb:.2f} GB"
    )
    typer.echo(f"offline: medcap fetch --verify {out}; then MEDCAP_BUNDLE={out} medcap ...")


def command(
    recipe: Annotated[
        str | None,
        typer.Option(help="Recipe to fetch: a name from --list, or a .toml recipe file."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Bundle folder to write (a rerun resumes).")
    ] = None,
    with_data: Annotated[
        bool,
        typer.Option("--with-data", help="Also fetch the recipe's datasets (ROCOv2: ~19 GB)."),
    ] = False,
    list_recipes: Annotated[
        bool, typer.Option("--list", help="List the recipes and what each fetches.")
    ] = False,
    verify: Annotated[
        Path | None,
        typer.Option(
            help="Check a bundle: every file's size and sha256, nothing missing or extra."
        ),
    ] = None,
) -> None:
    """Download models and data into a bundle for machines without internet, or check one."""
    if list_recipes:
        _list()
    elif verify is not None:
        _verify(verify)
    elif recipe is not None and out is not None:
        _fetch(recipe, out, with_data)
    else:
        raise InputError(
            "pass --recipe NAME --out BUNDLE to fetch, --verify BUNDLE to check, or --list"
        )
