"""Real server processes for the tests: a free port, and an `aedetect` command started and
waited on until its health route answers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_aedetect(args: list[str], port: int, timeout: float = 120) -> subprocess.Popen:
    """`python -m aedetect.cli *args --port port`, once GET /healthz answers 200; its output on
    a pipe (stdout and stderr together). A process that exits first fails the test with it."""
    proc = subprocess.Popen([sys.executable, "-m", "aedetect.cli", *args, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
        assert proc.poll() is None, proc.stdout.read().decode()
    proc.kill()
    raise AssertionError(f"aedetect {args[0]} did not start")
