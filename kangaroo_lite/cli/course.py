"""`kangaroo-lite notebooks DIR`: the course copied out of the installed package, never over a learner's edits."""

from __future__ import annotations

import argparse
import shlex
from importlib.resources import files
from pathlib import Path
from typing import NamedTuple


def course_dir() -> Path:
    """The notebooks the package carries: kangaroo_lite/notebooks in a wheel, the checkout's notebooks/ otherwise."""
    packaged = files("kangaroo_lite") / "notebooks"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "notebooks"


class CopyReport(NamedTuple):
    """What `copy_course` did with each notebook: copied, already there unchanged, or kept as the user left it."""

    copied: list[str]
    unchanged: list[str]
    kept: list[str]


def copy_course(dest: str | Path, source: str | Path | None = None) -> CopyReport:
    """Copy every notebook into `dest`; a file already there is left alone (and reported if it differs)."""
    dest = Path(dest).expanduser()
    source = Path(source) if source is not None else course_dir()
    notebooks = sorted(source.glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no notebooks in {source}: is kangaroo_lite installed with its course?")
    if dest.exists() and not dest.is_dir():
        raise ValueError(f"{dest} is a file, not a folder: name a folder to copy the course into")
    dest.mkdir(parents=True, exist_ok=True)
    report = CopyReport([], [], [])
    for notebook in notebooks:
        target = dest / notebook.name
        content = notebook.read_bytes()
        if not target.exists():
            target.write_bytes(content)
            report.copied.append(notebook.name)
        elif target.is_file() and target.read_bytes() == content:
            report.unchanged.append(notebook.name)
        else:
            report.kept.append(notebook.name)
    return report


def cmd_notebooks(args: argparse.Namespace) -> None:
    """Copy the course into a folder and say how to open it."""
    report = copy_course(args.dir)
    dest = Path(args.dir).expanduser()
    n = len(report.copied)
    print(
        f"{n} notebook{'' if n == 1 else 's'} copied to {dest}"
        + (f", {len(report.unchanged)} already there unchanged" if report.unchanged else "")
    )
    for name in report.kept:
        print(f"  kept {name}: your copy differs from the course's (delete it to get the original back)")
    print(f"Open the course:  jupyter lab {shlex.quote(str(dest))}")
