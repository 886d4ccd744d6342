"""Build the course as a static web site (`make book`): Jupyter Book 1 over the notebooks, executed and cached.

The repository keeps one copy of everything: book/ (config, table of contents, intro page, extension),
notebooks/*.ipynb and docs/img/*.png are staged into build/book/src (a file is copied only when it changed,
keeping its time, so Sphinx rereads only changed pages), and the site is written to build/book/_build/html.
jupyter-cache keeps executed outputs in build/book/_build/.jupyter_cache (git-ignored): a notebook whose code
is unchanged is not run again. Offline throughout.

With `--parallel` the notebooks missing from the cache are first executed one per CPU core (jupyter-cache's
parallel executor, into the same cache), then the book is built from the cache: `make test` does this, after
the other tests; `make book` runs them one by one, beside whatever else the machine is running.

    python scripts/build_book.py [--out build/book] [--parallel]
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _sync(source: Path, dest: Path) -> None:
    """Copy `source` to `dest` unless an identical file is there already (its time kept: Sphinx sees no change)."""
    if dest.is_file() and filecmp.cmp(source, dest, shallow=False):
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, dest)


def stage(src: Path) -> list[Path]:
    """Stage the book's sources into `src`; what was there and is no longer a source is removed."""
    files = {
        p: src / p.relative_to(ROOT / "book")
        for p in (ROOT / "book").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    files |= {p: src / p.name for p in (ROOT / "notebooks").glob("*.ipynb")}
    staged = list(files.items())
    for image in (ROOT / "docs" / "img").glob("*.png"):  # the intro's figures; _static: pages showing a widget
        staged += [(image, src / "img" / image.name), (image, src / "_static" / image.name)]
    for source, dest in staged:
        _sync(source, dest)
    keep = {dest for _, dest in staged}
    for stale in [p for p in src.rglob("*") if p.is_file() and p not in keep and "__pycache__" not in p.parts]:
        stale.unlink()
    return sorted(keep)


def execute_missing(src: Path, cache_dir: Path) -> None:
    """Execute the staged notebooks whose code is not in the cache yet, one per CPU core, into the cache."""
    import yaml
    from jupyter_cache import get_cache
    from jupyter_cache.executors import load_executor

    timeout = yaml.safe_load((src / "_config.yml").read_text())["execute"]["timeout"]
    cache = get_cache(cache_dir)
    records = [cache.add_nb_to_project(str(notebook)) for notebook in sorted(src.glob("*.ipynb"))]
    missing = [r.pk for r in records if cache.get_cached_project_nb(r.pk) is None]
    if not missing:
        return
    print(f"executing {len(missing)} notebooks, {os.cpu_count()} at a time")
    executor = load_executor("local-parallel", cache=cache)
    result = executor.run_and_cache(filter_pks=missing, timeout=timeout, allow_errors=False)
    failed = result.excepted + result.errored
    if failed:
        tracebacks = "\n".join(f"{uri}:\n{cache.get_project_record(uri).traceback}" for uri in failed)
        raise SystemExit(f"notebooks failed: {failed}\n{tracebacks}")


def build(out: Path, parallel: bool = False) -> Path:
    """Stage and build; returns the folder of the site's index.html."""
    try:
        import jupyter_book  # noqa: F401
    except ImportError as exc:
        raise SystemExit("jupyter-book is not installed: make book (or pip install -e '.[book]')") from exc
    src = out / "src"
    stage(src)
    os.environ["OMP_NUM_THREADS"] = "1"  # every kernel: one thread (the notebooks' timings assume it)
    if parallel:
        execute_missing(src, out / "_build" / ".jupyter_cache")
    env = {**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    cmd = [
        str(Path(sys.executable).parent / "jupyter-book"),
        "build",
        str(src),
        "--path-output",
        str(out),
        "--builder",
        "html",
        "--all",
        "--warningiserror",
        "--keep-going",
    ]
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    return out / "_build" / "html"


def main() -> None:
    """`python scripts/build_book.py [--out DIR] [--parallel]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "book")
    parser.add_argument("--parallel", action="store_true", help="execute the notebooks one per CPU core first")
    args = parser.parse_args()
    start = time.monotonic()
    html = build(args.out.resolve(), args.parallel)
    print(f"the course as a web site: {html / 'index.html'} ({time.monotonic() - start:.0f} s)")


if __name__ == "__main__":
    main()
