"""A real `egide serve` process on a free loopback port, for browser tests and benchmarks.

    with running_server(instance_dir) as server:   # server.url, server.port, server.log_path
        urllib.request.urlopen(server.url + "/api/v1/models")

Starts the same command as the README's main job, waits until the API answers, and stops the
process (terminate, then kill) on the way out. Token variables are removed from its
environment, so the server accepts unauthenticated requests on loopback.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunningServer:
    url: str  # http://127.0.0.1:PORT
    port: int
    instance: Path
    log_path: Path
    pid: int = 0  # the server process (for benchmarks that watch its memory)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def egide_command() -> list[str]:
    """The `egide` script of this interpreter's environment (else on PATH, else via -c)."""
    script = Path(sys.executable).with_name("egide")
    if script.exists():
        return [str(script)]
    found = shutil.which("egide")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from egide.lab.cli import main; sys.exit(main())"]


@contextlib.contextmanager
def running_server(instance, *, args: tuple[str, ...] = (), timeout: float = 90.0,
                   log_path=None):
    """Run `egide serve` with `instance` as its instance folder until the block ends."""
    instance = Path(instance)
    instance.mkdir(parents=True, exist_ok=True)
    log_path = Path(log_path) if log_path else instance / "server.log"
    port = free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for key in ("EGIDE_TOKEN", "EGIDE_API_TOKEN"):
        env.pop(key, None)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            egide_command() + ["serve", "--port", str(port), "--instance", str(instance), *args],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(proc, url, timeout, log_path)
        yield RunningServer(url, port, instance, log_path, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait_until_ready(proc, url: str, timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"egide serve exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(url + "/api/v1/models", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"egide serve did not answer within {timeout:.0f} s")
        time.sleep(0.2)
