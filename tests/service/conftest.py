"""Servers on loopback for the service tests: the app run for real by uvicorn in a thread
(on a port the OS picks), a saved tiny model, a keys file, and fake upstreams."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi", reason="the service extra is not installed")
import uvicorn

from gnnbackdoor.models import MODELS
from gnnbackdoor.models.io import save_model
from gnnbackdoor.service.keys import add_key

FEATURES = 3


@contextmanager
def serve(app) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1 (a free port); yields its base URL; stops it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def fake_upstream(handler: Callable[[http.server.BaseHTTPRequestHandler, dict], None]):
    """A stdlib HTTP server on loopback whose POST handler is ``handler(request, body)``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("content-length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            handler(self, body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def reply(request, status: int, payload: bytes) -> None:
    try:
        request.send_response(status)
        request.send_header("content-type", "application/json")
        request.send_header("content-length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the shield gave up waiting (the point of the slow-upstream test)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """An untrained 3-feature, 2-class GCN saved with ``save_model``."""
    torch.manual_seed(0)
    spec = MODELS.get("gcn")()
    model = spec.build(FEATURES, 2)
    return save_model(model, spec, tmp_path_factory.mktemp("model") / "gcn", FEATURES, 2)


@pytest.fixture(scope="session")
def api_key(tmp_path_factory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("keys") / "keys.txt"
    key = add_key(path)
    add_key(path)  # a second key in the file
    return path, key


def triangle(width: int = FEATURES) -> dict:
    return {
        "x": [[1.0] + [0.0] * (width - 1), [0.0] * (width - 1) + [1.0], [0.5] * width],
        "edge_index": [[0, 1, 1, 2, 2, 0], [1, 0, 2, 1, 0, 2]],
    }


def ring(n: int = 12, width: int = FEATURES) -> dict:
    src = list(range(n)) + [(i + 1) % n for i in range(n)]
    dst = [(i + 1) % n for i in range(n)] + list(range(n))
    x = [[float(i % 2), float(i % 3 == 0), 1.0] for i in range(n)]
    return {"x": [row[:width] + [0.0] * (width - 3) for row in x], "edge_index": [src, dst]}
