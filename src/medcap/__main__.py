"""`python -m medcap` runs the CLI."""

from medcap.cli import run

run()
