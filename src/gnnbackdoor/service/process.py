"""Waiting for a server started as a subprocess (benchmarks and tests start it that way)."""

from __future__ import annotations

import subprocess
import time

import httpx


def wait_until_healthy(base_url: str, server: subprocess.Popen, timeout_s: float = 60.0) -> None:
    """Poll ``GET {base_url}/healthz`` until it answers 200.

    Raises:
        RuntimeError: the process exited, or ``timeout_s`` passed; the message carries the
            server's stderr when it was captured.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            detail = (
                server.stderr.read().decode() if server.stderr and server.poll() is not None else ""
            )
            raise RuntimeError(f"server at {base_url} did not start: {detail}".rstrip(": "))
        time.sleep(0.2)
