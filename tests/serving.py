"""Start `unetkit serve` as users start it (a subprocess on a free loopback port) and stop it after."""

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc, wait_s: float, what: str, output, poll_s: float = 0.1) -> None:
    """Until GET url/health answers; fails with the process's output if it exits or time runs out."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            return
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"{what} exited with {proc.returncode}: {output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{what} did not answer /health within {wait_s:.0f} s: {output()}")
            time.sleep(poll_s)


@contextlib.contextmanager
def running_server(target, *flags: str, wait_s: float = 60, command: str = "serve"):
    """Yields (url, process) once /health answers; fails with the server's output if it exits.
    `target`: the checkpoint (serve) or the folder (annotate, with --model among the flags)."""
    port = free_port()
    cmd = [sys.executable, "-m", "unetkit", command, str(target), "--port", str(port), *flags]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, wait_s, f"unetkit {command}", lambda: proc.stdout.read())
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
