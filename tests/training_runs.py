"""Training runs for the multi-process tests: `kangaroo-lite` in fresh processes, as `accelerate launch` would start
them on a cluster (CPUs here), and what their outputs are compared by."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port free on this machine now (for the processes' rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], processes: int) -> subprocess.CompletedProcess:
    """`kangaroo-lite ARGS` in `processes` fresh processes (one thread each, CPU only)."""
    command = [sys.executable]
    if processes > 1:
        # `accelerate launch --cpu --num_processes 2` starts ONE process (its CPU launcher needs mpirun); the
        # torchrun launcher (`--multi_gpu`) starts them, and ACCELERATE_USE_CPU=1 joins them over gloo on CPUs.
        command += ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
                    "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                    "--main_process_port", str(free_port())]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", TOKENIZERS_PARALLELISM="false",
               CUDA_VISIBLE_DEVICES="", ACCELERATE_USE_CPU="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    proc = subprocess.run([*command, "-m", "kangaroo_lite.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def history(folder: Path) -> list[dict]:
    """The logged records of a finished run."""
    return json.loads((folder / "training.json").read_text())


def max_weight_difference(a: Path, b: Path) -> float:
    """The largest absolute difference between two saved adapters' weights."""
    x, y = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert x.keys() == y.keys()
    return max((x[k].float() - y[k].float()).abs().max().item() for k in x)


def assert_histories_close(a: list[dict], b: list[dict], tolerance: float) -> None:
    """The same steps logged, with the same keys, every number within `tolerance`."""
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x.keys() - {"step"}:
            if x[key] is None or y[key] is None:
                assert x[key] is None and y[key] is None, (x, y)
            else:
                assert x[key] == pytest.approx(y[key], abs=tolerance), (key, x, y)
