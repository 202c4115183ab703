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
        exited = server.poll() is not None
        if exited or time.monotonic() > deadline:
            detail = server.stderr.read().decode().strip() if exited and server.stderr else ""
            reason = f": {detail}" if detail else ""
            raise RuntimeError(f"server at {base_url} did not start{reason}")
        time.sleep(0.2)
