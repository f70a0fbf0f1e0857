"""examples/multihost.py as two processes on one machine (4 CPU devices each,
joined by jax.distributed over loopback, gloo collectives) gives the numbers of
one process over 8 devices, and the two processes agree with each other."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "examples" / "multihost.py"
# float32 sums of the same terms, grouped per device then per process
TOL = 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(tmp_path: Path, devices: int, processes: int) -> list[dict]:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    # added to the suite's own XLA flags (make test's compile-time settings), not in their place
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
    env["XLA_FLAGS"] = flags.strip()
    coordinator = f"127.0.0.1:{_free_port()}"
    runs = []
    for pid in range(processes):
        out = tmp_path / f"{processes}x{devices}_{pid}.json"
        cmd = [sys.executable, str(SCRIPT), "--quick", "--json", str(out)]
        cmd += ["--process-id", str(pid), "--num-processes", str(processes)]
        cmd += ["--coordinator", coordinator]
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        runs.append((proc, out))
    results = []
    try:
        for proc, out in runs:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-4000:]
            results.append(json.loads(out.read_text()))
    finally:
        for proc, _ in runs:
            if proc.poll() is None:
                proc.kill()
    return results


def _close(a: dict, b: dict) -> None:
    for k in ("log_ml", "mu", "log_s", "history_last"):
        np.testing.assert_allclose(a[k], b[k], atol=TOL, rtol=TOL, err_msg=k)


def test_two_processes_agree_with_one(tmp_path):
    (one,) = _launch(tmp_path, devices=8, processes=1)
    first, second = _launch(tmp_path, devices=4, processes=2)
    assert one["processes"] == 1 and first["processes"] == second["processes"] == 2
    assert one["devices"] == first["devices"] == second["devices"] == 8
    assert first == second  # the same replicated values, read on each process
    _close(one, first)
