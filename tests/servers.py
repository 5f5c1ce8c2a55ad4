"""Real servers for the tests (not a test module): start a process on 127.0.0.1 and wait for its /health."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_until_healthy(cmd: list[str], base: Path, port: int, env: dict[str, str] | None = None,
                        timeout: float = 120.0) -> subprocess.Popen:
    """Run ``cmd`` in ``base`` (output in ``base/server.log``) in its own session, so that killing its group
    ends the server's worker processes too; return once ``http://127.0.0.1:<port>/health`` answers 200."""
    base.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})}
    env.pop("MLFLOW_TRACKING_URI", None)
    log_path = base / "server.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, cwd=base, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                if response.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    kill_server(proc)
    raise RuntimeError(f"server did not answer /health in {timeout:.0f} s:\n{log_path.read_text()[-3000:]}")


def kill_server(proc: subprocess.Popen) -> None:
    """SIGKILL the server and its workers (a crash, not a shutdown)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM the server's group, SIGKILL what is left after 20 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        kill_server(proc)


def start_team_server(base: Path, admin_password: str) -> tuple[subprocess.Popen, str]:
    """``dllm-server`` (basic auth, proxied artifacts) on a free port of 127.0.0.1, its stores under ``base``;
    the process and its URL. Stop it with :func:`stop_server`."""
    import sys

    port = free_port()
    proc = start_until_healthy([sys.executable, "-m", "dllm_lab.cli.server", "--port", str(port),
                                "--base-dir", str(base / "server")], base, port,
                               env={"DLLM_SERVER_ADMIN_PASSWORD": admin_password})
    return proc, f"http://127.0.0.1:{port}"
