"""`dctq inspect`: placeholder until the inspect command lands."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the inspect command to `app`."""
