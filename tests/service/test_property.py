"""Property: no request body, however odd, makes the service answer 500 (or raise)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gnnbackdoor.service import ServiceSettings, create_app, create_model_app

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=25,
)
numbers = st.integers(-3, 12) | st.floats(allow_nan=True, allow_infinity=True) | st.booleans()
graph_like = st.fixed_dictionaries(
    {
        "x": st.lists(st.lists(numbers, max_size=4), max_size=6) | json_values,
        "edge_index": st.lists(st.lists(numbers, max_size=6), max_size=3) | json_values,
    },
    optional={"y": json_values},
)
bodies = (
    json_values
    | st.fixed_dictionaries({"graphs": st.lists(graph_like, max_size=4)})
    | st.fixed_dictionaries({"graphs": json_values})
)


@pytest.fixture(scope="module", params=["shield", "model"])
def test_client(request, model_dir, api_key):
    factory = create_app if request.param == "shield" else create_model_app
    app = factory(ServiceSettings(model_dir=model_dir, api_keys_file=api_key[0]))
    with TestClient(app, raise_server_exceptions=True) as client:
        client.headers["Authorization"] = f"Bearer {api_key[1]}"
        yield client


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies)
def test_random_json_bodies_never_give_500(test_client, body):
    response = test_client.post(
        "/v1/predict",
        content=json.dumps(body, allow_nan=True),
        headers={"content-type": "application/json"},
    )
    assert response.status_code in (200, 401, 413, 422), response.text


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=st.binary(max_size=64))
def test_random_bytes_never_give_500(test_client, raw):
    response = test_client.post("/v1/predict", content=raw)
    assert response.status_code in (401, 413, 422), response.text
