"""Thin route modules: check request-level limits, hand the graphs to the shield or the
model, shape the answer."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from gnnbackdoor.service.deps import ApiKey, BackendDep, BatcherDep, SettingsDep, ShieldDep
from gnnbackdoor.service.schemas import (
    ErrorBody,
    Health,
    LabelsResponse,
    Prediction,
    PredictRequest,
    PredictResponse,
)

ERRORS = {
    401: {"model": ErrorBody, "description": "missing or unknown API key"},
    413: {"model": ErrorBody, "description": "body, graph count, nodes or edges over a limit"},
    422: {"description": "malformed graphs (the message says what is wrong)"},
}
UPSTREAM_ERRORS = {
    502: {"model": ErrorBody, "description": "the model failed"},
    504: {"model": ErrorBody, "description": "the model timed out"},
}


def check_request(body: PredictRequest, settings: SettingsDep, backend) -> None:
    """Limits (413) and the feature width (422)."""
    if len(body.graphs) > settings.max_graphs:
        raise HTTPException(
            413,
            f"{len(body.graphs)} graphs in one request; the limit is {settings.max_graphs}",
        )
    expected = getattr(backend, "feature_width", None) or settings.feature_width
    for i, graph in enumerate(body.graphs):
        if graph.num_nodes > settings.max_nodes:
            raise HTTPException(
                413,
                f"graphs[{i}] has {graph.num_nodes} nodes; the limit is {settings.max_nodes}",
            )
        if graph.num_edges > settings.max_edges:
            raise HTTPException(
                413,
                f"graphs[{i}] has {graph.num_edges} edges; the limit is {settings.max_edges}",
            )
        width = expected or body.graphs[0].width
        if graph.width != width:
            raise HTTPException(
                422,
                f"graphs[{i}].x has {graph.width} features per node; the model expects {width}",
            )


health_router = APIRouter(tags=["health"])


@health_router.get("/healthz", response_model=Health)
def healthz(request: Request) -> Health:
    state = request.app.state
    backend = getattr(state, "backend", None)
    shield = getattr(state, "shield", None)
    return Health(
        mode=getattr(backend, "mode", "none"),
        defense=getattr(shield, "registered_name", None),
        feature_width=getattr(backend, "feature_width", None) or state.settings.feature_width,
    )


shield_router = APIRouter(prefix="/v1", tags=["shield"])


@shield_router.post(
    "/predict", response_model=PredictResponse, responses={**ERRORS, **UPSTREAM_ERRORS}
)
async def predict(
    body: PredictRequest,
    _: ApiKey,
    settings: SettingsDep,
    backend: BackendDep,
    shield: ShieldDep,
    batcher: BatcherDep,
) -> PredictResponse:
    """Shielded labels: each graph is filtered, sampled into subgraphs and voted on; all
    subgraphs go to the model in one query (requests that arrive together share it)."""
    check_request(body, settings, backend)
    labels, details = await batcher.predict(shield, backend, [g.to_data() for g in body.graphs])
    return PredictResponse(
        predictions=[
            Prediction(label=int(label), votes=d["votes"], removed_nodes=d["removed_nodes"])
            for label, d in zip(labels, details, strict=True)
        ]
    )


model_router = APIRouter(prefix="/v1", tags=["model"])


@model_router.post("/predict", response_model=LabelsResponse, responses=ERRORS)
def predict_plain(
    body: PredictRequest, _: ApiKey, settings: SettingsDep, backend: BackendDep
) -> LabelsResponse:
    """Unshielded labels of the saved model (a stand-in for a third-party endpoint)."""
    check_request(body, settings, backend)
    return LabelsResponse(labels=backend([g.to_data() for g in body.graphs]).tolist())
