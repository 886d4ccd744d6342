"""What every command shares: never overwrite what a user wrote."""

from __future__ import annotations

from pathlib import Path


def refuse_overwrite(path: Path, force: bool) -> None:
    """Exit with a message when `path` holds something and `--force` was not given."""
    if path.exists() and any(path.iterdir() if path.is_dir() else [path]) and not force:
        raise SystemExit(f"{path} already exists; pass --force to overwrite it")
