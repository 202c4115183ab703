"""The README's command blocks run as written (examples/readme_commands.sh): a first session
on the generated datasets, then saving a backdoored model and serving it behind the shield."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "readme_commands.sh"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.example
def test_readme_commands_run_as_written():
    pytest.importorskip("uvicorn", reason="the serve example needs the service extra")
    if shutil.which("curl") is None:
        pytest.skip("the README's serve example uses curl")
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "PORT": str(_free_port()),
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "the README's commands ran as written" in done.stderr
    assert '{"predictions":[' in done.stdout  # the shielded answer to examples/request.json
    assert "What happened:" in done.stdout and "Glossary:" in done.stdout
