"""Running `kangaroo-lite` in fresh processes, as `accelerate launch` would on a cluster (CPUs here)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

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
