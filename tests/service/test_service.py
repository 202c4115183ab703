"""The service started for real (uvicorn on loopback): auth, limits, malformed graphs,
upstream failures, the happy path, and the plain model endpoint."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from tests.service.conftest import FEATURES, fake_upstream, reply, ring, serve, triangle

from gnnbackdoor.service import ServiceSettings, create_app, create_model_app


@pytest.fixture(scope="module")
def shield_url(model_dir, api_key):
    settings = ServiceSettings(
        model_dir=model_dir,
        api_keys_file=api_key[0],
        max_graphs=8,
        max_nodes=200,
        max_edges=1000,
        max_body_bytes=200_000,
    )
    with serve(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def client(shield_url, api_key):
    with httpx.Client(
        base_url=shield_url, headers={"Authorization": f"Bearer {api_key[1]}"}, timeout=10
    ) as c:
        yield c


def test_health_and_docs_need_no_key(shield_url):
    health = httpx.get(f"{shield_url}/healthz").json()
    assert health == {
        "status": "ok",
        "mode": "model",
        "defense": "graphprot-tf",
        "feature_width": FEATURES,
    }
    assert httpx.get(f"{shield_url}/openapi.json").json()["paths"]["/v1/predict"]
    assert httpx.get(f"{shield_url}/docs").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer"},
    ],
)
def test_401_without_a_valid_key(shield_url, headers):
    for body in ({"graphs": [triangle()]}, {"graphs": "not even graphs"}):
        response = httpx.post(f"{shield_url}/v1/predict", json=body, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
    response = httpx.post(f"{shield_url}/v1/predict", content=b"{not json", headers=headers)
    assert response.status_code == 401


def test_happy_path_in_order_with_votes_and_removed_nodes(client):
    graphs = [triangle(), ring(12), ring(20)]
    response = client.post("/v1/predict", json={"graphs": graphs})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 3
    for p in predictions:
        assert p["label"] in (0, 1)
        assert sum(p["votes"].values()) == 5
        assert p["label"] == int(max(p["votes"], key=lambda c: (p["votes"][c], -int(c))))
        assert all(isinstance(n, int) for n in p["removed_nodes"])
    again = client.post("/v1/predict", json={"graphs": graphs[::-1]}).json()["predictions"]
    assert again[::-1] == predictions  # deterministic, independent of batch order


def test_413_on_oversize_body_and_counts(client):
    huge = {"graphs": [ring(150)] * 8, "padding": "x" * 300_000}
    response = client.post("/v1/predict", json=huge)
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]
    chunks = (b'{"graphs": [' + b" " * 50_000 for _ in range(6))
    assert client.post("/v1/predict", content=chunks).status_code == 413  # chunked, no length
    many = client.post("/v1/predict", json={"graphs": [triangle()] * 9})
    assert many.status_code == 413 and "9 graphs" in many.json()["detail"]
    big = client.post("/v1/predict", json={"graphs": [ring(201)]})
    assert big.status_code == 413 and "nodes" in big.json()["detail"]
    edges = {"x": [[0.0] * FEATURES] * 2, "edge_index": [[0, 1] * 501, [1, 0] * 501]}
    dense = client.post("/v1/predict", json={"graphs": [edges]})
    assert dense.status_code == 413 and "edges" in dense.json()["detail"]


MALFORMED = {
    "ragged x": ({"x": [[1.0, 0.0, 0.0], [1.0]], "edge_index": [[], []]}, "row 1"),
    "no nodes": ({"x": [], "edge_index": [[], []]}, "at least one node"),
    "no features": ({"x": [[], []], "edge_index": [[], []]}, "feature"),
    "one edge row": ({"x": [[1.0, 0, 0]], "edge_index": [[0]]}, "2 rows"),
    "three edge rows": ({"x": [[1.0, 0, 0]], "edge_index": [[0], [0], [0]]}, "2 rows"),
    "rows differ": ({"x": [[1.0, 0, 0]] * 2, "edge_index": [[0, 1], [1]]}, "differ"),
    "index too big": ({"x": [[1.0, 0, 0]] * 2, "edge_index": [[0, 2], [1, 0]]}, "out of range"),
    "negative index": ({"x": [[1.0, 0, 0]] * 2, "edge_index": [[0], [-1]]}, "out of range"),
    "float index": ({"x": [[1.0, 0, 0]] * 2, "edge_index": [[0.5], [1]]}, "integer"),
    "string feature": ({"x": [["1", 0, 0]], "edge_index": [[], []]}, "number"),
    "bool feature": ({"x": [[True, 0, 0]], "edge_index": [[], []]}, "number"),
    "float32 overflow": ({"x": [[1e39, 0, 0]], "edge_index": [[], []]}, "float32"),
    "wrong width": ({"x": [[1.0, 0.0]], "edge_index": [[], []]}, "expects 3"),
    "missing edge_index": ({"x": [[1.0, 0, 0]]}, "edge_index"),
    "x not a list": ({"x": 5, "edge_index": [[], []]}, "x"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_422_names_what_is_wrong(client, name):
    graph, expected = MALFORMED[name]
    response = client.post("/v1/predict", json={"graphs": [triangle(), graph]})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert expected in detail, detail


@pytest.mark.parametrize(
    "raw",
    [
        b'{"graphs": [{"x": [[NaN, 0, 0]], "edge_index": [[], []]}]}',
        b'{"graphs": [{"x": [[Infinity, 0, 0]], "edge_index": [[], []]}]}',
        b'{"graphs": [{"x": [[-Infinity, 0, 0]], "edge_index": [[], []]}]}',
        b'{"graphs": []}',
        b'{"graphs": [',
        b"[]",
        b"",
        b"\xff\xfe",
    ],
)
def test_422_on_non_finite_values_and_broken_bodies(client, raw):
    response = client.post("/v1/predict", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


@pytest.fixture(scope="module")
def model_url(model_dir):
    with serve(create_model_app(ServiceSettings(model_dir=model_dir))) as url:
        yield url


def test_plain_model_endpoint(model_url):
    response = httpx.post(f"{model_url}/v1/predict", json={"graphs": [triangle(), ring(7)]})
    assert response.status_code == 200
    labels = response.json()["labels"]
    assert len(labels) == 2 and all(v in (0, 1) for v in labels)


def _shield_over(upstream: str, api_key, timeout: float = 5.0):
    return create_app(
        ServiceSettings(upstream_url=upstream, api_keys_file=api_key[0], upstream_timeout_s=timeout)
    )


def test_shield_over_a_real_upstream_matches_the_local_shield(model_url, client, api_key):
    graphs = [triangle(), ring(12), ring(20)]
    local = client.post("/v1/predict", json={"graphs": graphs}).json()
    with serve(_shield_over(model_url, api_key)) as url:
        response = httpx.post(
            f"{url}/v1/predict",
            json={"graphs": graphs},
            headers={"Authorization": f"Bearer {api_key[1]}"},
        )
        assert httpx.get(f"{url}/healthz").json()["mode"] == "upstream"
    assert response.status_code == 200, response.text
    assert response.json() == local


def _ask(url, api_key, timeout=10):
    return httpx.post(
        f"{url}/v1/predict",
        json={"graphs": [triangle(), ring(10)]},
        headers={"Authorization": f"Bearer {api_key[1]}"},
        timeout=timeout,
    )


@pytest.mark.parametrize(
    "behaviour",
    ["http 500", "not json", "wrong count", "labels not ints", "huge label"],
)
def test_502_when_the_upstream_fails(api_key, behaviour):
    def handler(request, body):
        n = len(body["graphs"])
        payloads = {
            "http 500": (500, b'{"detail": "boom"}'),
            "not json": (200, b"<html>"),
            "wrong count": (200, json.dumps({"labels": [0] * (n - 1)}).encode()),
            "labels not ints": (200, json.dumps({"labels": ["a"] * n}).encode()),
            "huge label": (200, json.dumps({"labels": [10**40] * n}).encode()),
        }
        reply(request, *payloads[behaviour])

    with fake_upstream(handler) as upstream, serve(_shield_over(upstream, api_key)) as url:
        response = _ask(url, api_key)
    assert response.status_code == 502, response.text
    assert "upstream" in response.json()["detail"]


def test_502_when_the_upstream_is_down(api_key):
    with fake_upstream(lambda r, b: None) as upstream:
        pass  # closed again: nothing listens on that port now
    with serve(_shield_over(upstream, api_key)) as url:
        response = _ask(url, api_key)
    assert response.status_code == 502


def test_504_when_the_upstream_is_slow(api_key):
    def handler(request, body):
        time.sleep(3)
        reply(request, 200, json.dumps({"labels": [0] * len(body["graphs"])}).encode())

    with fake_upstream(handler) as upstream, serve(_shield_over(upstream, api_key, 0.3)) as url:
        start = time.monotonic()
        response = _ask(url, api_key)
        took = time.monotonic() - start
    assert response.status_code == 504
    assert took < 2.5


def test_concurrent_requests_are_answered_as_if_alone(client):
    import concurrent.futures

    graphs = [ring(8 + i) for i in range(12)]
    alone = [
        client.post("/v1/predict", json={"graphs": [g]}).json()["predictions"][0] for g in graphs
    ]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        together = list(
            pool.map(lambda g: client.post("/v1/predict", json={"graphs": [g]}), graphs * 3)
        )
    assert all(r.status_code == 200 for r in together)
    assert [r.json()["predictions"][0] for r in together] == alone * 3


def test_serve_with_two_workers_answers_like_one(model_dir, api_key):
    """``serve --workers 2``: worker processes rebuild the settings from the environment."""
    import socket
    import subprocess
    import sys

    from gnnbackdoor.service.process import wait_until_healthy

    keys, key = api_key
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "gnnbackdoor", "serve", "--model", str(model_dir),
               "--api-keys", str(keys), "--host", "127.0.0.1", "--port", str(port),
               "--workers", "2", "--max-graphs", "3", "--quiet"]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base, server)
        auth = {"Authorization": f"Bearer {key}"}
        ok = httpx.post(f"{base}/v1/predict", json={"graphs": [triangle()]}, headers=auth)
        assert ok.status_code == 200 and len(ok.json()["predictions"]) == 1
        too_many = httpx.post(f"{base}/v1/predict", json={"graphs": [triangle()] * 4}, headers=auth)
        assert too_many.status_code == 413  # --max-graphs reached the workers
        assert httpx.post(f"{base}/v1/predict", json={"graphs": [triangle()]}).status_code == 401
    finally:
        server.terminate()
        server.wait(20)
