"""The course as people get it: a wheel built from the checkout works in a fresh venv, outside any checkout.

The wheel is built the way `python -m build` builds it (an sdist first, the wheel from the unpacked sdist),
from a clean copy of the package's sources, so MANIFEST.in and the package-data mapping are both checked.
Installing torch and the rest afresh would cost minutes and a gigabyte, so the fresh venv borrows this venv's
installed packages through a .pth line: the .pth files *inside* that folder (this checkout's editable finder
among them) are not processed, so the checkout cannot be imported from the fresh venv.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["pyproject.toml", "MANIFEST.in", "README.md", "kangaroo_lite", "data", "notebooks"]
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", "*.egg-info", "checkpoint")


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    output = f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{output}"
    return proc.stdout


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that points back into the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KANGAROO_LITE_DATA", "VIRTUAL_ENV")}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONNOUSERSITE": "1", **extra}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """An sdist of a clean copy of the sources, and a wheel built from that sdist (setuptools' PEP 517 hooks)."""
    root = tmp_path_factory.mktemp("build")
    src, dist = root / "src", root / "dist"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=IGNORED)
        else:
            shutil.copy2(path, src / name)
    env = _clean_env()
    hook = "import sys; from setuptools import build_meta as b; print(getattr(b, sys.argv[1])(sys.argv[2]))"
    sdist = dist / _run([sys.executable, "-c", hook, "build_sdist", str(dist)], src, env).strip().splitlines()[-1]
    with tarfile.open(sdist) as tar:
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python 3.11.4 and later
        tar.extractall(root / "unpacked", **safe)
    (unpacked,) = (root / "unpacked").iterdir()
    wheel = dist / _run([sys.executable, "-c", hook, "build_wheel", str(dist)], unpacked, env).strip().splitlines()[-1]
    return {"sdist": sdist, "wheel": wheel}


def test_the_wheel_and_sdist_carry_the_data_and_the_course(built):
    names = set(zipfile.ZipFile(built["wheel"]).namelist())
    for path in (ROOT / "data").rglob("*"):
        if path.is_file() and "checkpoint" not in path.relative_to(ROOT / "data").parts:
            assert f"kangaroo_lite/data/{path.relative_to(ROOT / 'data').as_posix()}" in names
    course = {f"kangaroo_lite/notebooks/{p.name}" for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert course and course <= names
    assert not [n for n in names if "ipynb_checkpoints" in n or "__pycache__" in n]
    with tarfile.open(built["sdist"]) as tar:
        members = {m.split("/", 1)[1] for m in tar.getnames() if "/" in m}
    assert {"data/tokenizer/tokenizer.json", "data/models/target/config.json", "MANIFEST.in"} <= members


def test_the_installed_wheel_loads_its_models_copies_the_course_and_runs_notebook_00(built, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, _clean_env())
    python = venv / "bin" / "python"
    purelib = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp_path, _clean_env()
        ).strip()
    )
    # this venv's installed packages, behind the fresh venv's own: torch, transformers, papermill, …
    borrowed = [sysconfig.get_path("purelib"), *site.getsitepackages()]
    (purelib / "borrowed.pth").write_text("\n".join(dict.fromkeys(borrowed)) + "\n")
    env = _clean_env(PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    work = tmp_path / "elsewhere"
    work.mkdir()
    hidden = subprocess.run([str(python), "-c", "import kangaroo_lite"], cwd=work, env=env, capture_output=True)
    assert hidden.returncode != 0, "the checkout is importable from the fresh venv: the test would prove nothing"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    _run([*pip, "install", "--quiet", "--no-deps", "--no-index", str(built["wheel"])], work, env)

    probe = (
        "import json, kangaroo_lite as kl; from kangaroo_lite.models.loading import DATA_DIR; "
        "tok, target, draft, adapter = kl.load_default(); "
        "print(json.dumps({'file': kl.__file__, 'data': str(DATA_DIR), 'adapter': adapter is not None}))"
    )
    found = json.loads(_run([str(python), "-c", probe], work, env).strip().splitlines()[-1])
    assert Path(found["file"]).is_relative_to(venv) and Path(found["data"]).is_relative_to(venv), found
    assert found["adapter"]

    out = _run([str(venv / "bin" / "kangaroo-lite"), "notebooks", "course"], work, env)
    copied = sorted(p.name for p in (work / "course").glob("*.ipynb"))
    assert copied == sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert "jupyter lab course" in out

    result = work / "course" / "00.json"
    _run(
        [
            str(python),
            "-m",
            "papermill",
            "--cwd",
            str(work / "course"),
            "-p",
            "result_json",
            str(result),
            "00_autoregressive_baseline.ipynb",
            "00_out.ipynb",
        ],
        work / "course",
        env,
        timeout=600,
    )
    assert json.loads(result.read_text())["model"] == "tiny"
