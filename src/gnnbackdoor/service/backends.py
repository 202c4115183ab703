"""What the shield queries: a saved model in this process, or an upstream HTTP endpoint.

Both are black boxes with the same face, ``backend(graphs) -> LongTensor[B]`` (the library's
``PredictFn``); the shield never sees more.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import torch
from torch import Tensor
from torch_geometric.data import Data

from gnnbackdoor.errors import UserError


class UpstreamError(Exception):
    """The upstream model failed (502) or did not answer in time (504)."""

    def __init__(self, status_code: int, detail: str):
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


def collate(graphs: Sequence[Data]) -> tuple[Tensor, Tensor, Tensor]:
    """``(x, edge_index, batch)`` of a disjoint union, without PyG's general collate (which
    costs ~50 us per graph, more than the model on small graphs)."""
    sizes = [int(g.x.size(0)) for g in graphs]
    offsets = [0, *torch.tensor(sizes).cumsum(0).tolist()[:-1]]
    x = torch.cat([g.x for g in graphs])
    edge_index = torch.cat([g.edge_index + off for g, off in zip(graphs, offsets, strict=True)], 1)
    batch = torch.repeat_interleave(torch.arange(len(graphs)), torch.tensor(sizes))
    return x, edge_index, batch


#: Nodes plus edges per model call: batches that stay in the CPU caches run faster. One
#: batch of the whole COLLAB test set (74 nodes and 4,900 directed edges per graph) ran at
#: about half the rate of chunks of this size; AIDS (16 nodes) is no slower in chunks
#: (``bench/graphprot_speed.py`` measures both).
CHUNK_SIZE = 1 << 17


def chunks(graphs: Sequence[Data], size: int) -> list[Sequence[Data]]:
    """Consecutive runs of ``graphs`` with at most ``size`` nodes plus edges each (a graph
    larger than that is a run of its own)."""
    runs: list[Sequence[Data]] = []
    start, total = 0, 0
    for i, graph in enumerate(graphs):
        cost = int(graph.x.size(0)) + int(graph.edge_index.size(1))
        if i > start and total + cost > size:
            runs.append(graphs[start:i])
            start, total = i, 0
        total += cost
    if start < len(graphs):
        runs.append(graphs[start:])
    return runs


class ModelBackend:
    """A graph classifier saved by ``--save-model``, loaded with ``load_model`` (weights via
    ``torch.load(weights_only=True)`` and a JSON config; never an arbitrary pickle)."""

    mode = "model"

    def __init__(self, model: torch.nn.Module, feature_width: int, chunk_size: int = CHUNK_SIZE):
        self.model = model.eval()
        self.feature_width = feature_width
        self.chunk_size = chunk_size

    @classmethod
    def load(cls, folder: Path) -> ModelBackend:
        from gnnbackdoor.models.io import load_model

        model, config = load_model(folder)
        if config.get("task") != "graph":
            raise UserError(f"{folder} holds a {config.get('task')} model, not a graph classifier")
        return cls(model, int(config["in_channels"]))

    @torch.no_grad()
    def __call__(self, graphs: Sequence[Data]) -> Tensor:
        labels = []
        for part in chunks(graphs, self.chunk_size):
            x, edge_index, batch = collate(part)
            logits = self.model(x, edge_index, batch, num_graphs=len(part))
            labels.append(logits.argmax(dim=-1))
        return torch.cat(labels) if labels else torch.empty(0, dtype=torch.long)

    def close(self) -> None:
        pass


def graph_json(graph: Data) -> dict[str, Any]:
    return {"x": graph.x.tolist(), "edge_index": graph.edge_index.tolist()}


class UpstreamBackend:
    """An upstream ``POST {url}/v1/predict`` that answers ``{"labels": [int, ...]}``; one HTTP
    call per shield query, bounded by ``timeout_s``."""

    mode = "upstream"

    def __init__(
        self,
        url: str,
        timeout_s: float = 5.0,
        api_key: str | None = None,
        feature_width: int | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = url.rstrip("/")
        self.feature_width = feature_width
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout_s), headers=headers, transport=transport
        )

    def __call__(self, graphs: Sequence[Data]) -> Tensor:
        body = {"graphs": [graph_json(g) for g in graphs]}
        try:
            response = self.client.post(f"{self.url}/v1/predict", json=body)
        except httpx.TimeoutException:
            raise UpstreamError(504, "upstream model timed out") from None
        except httpx.HTTPError as error:
            reason = type(error).__name__
            raise UpstreamError(502, f"upstream model unreachable: {reason}") from None
        if response.status_code != 200:
            raise UpstreamError(502, f"upstream model answered HTTP {response.status_code}")
        try:
            labels = response.json()["labels"]
            ok = (
                isinstance(labels, list)
                and len(labels) == len(graphs)
                and all(type(v) is int and 0 <= v < 2**31 for v in labels)
            )
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            raise UpstreamError(
                502, f"upstream model did not answer {{'labels': [{len(graphs)} ints]}}"
            )
        return torch.tensor(labels, dtype=torch.long)

    def close(self) -> None:
        self.client.close()


def build_backend(settings) -> ModelBackend | UpstreamBackend | None:
    """The backend the settings name (``None`` when neither a model nor an upstream is set:
    tests then override the ``get_backend`` dependency)."""
    if settings.model_dir is not None and settings.upstream_url:
        raise UserError("give either a model folder or an upstream URL, not both")
    if settings.model_dir is not None:
        backend = ModelBackend.load(settings.model_dir)
        if settings.feature_width not in (None, backend.feature_width):
            raise UserError(
                f"feature width {settings.feature_width} differs from the model's "
                f"{backend.feature_width}"
            )
        return backend
    if settings.upstream_url:
        return UpstreamBackend(
            settings.upstream_url,
            settings.upstream_timeout_s,
            settings.upstream_api_key,
            settings.feature_width,
        )
    return None
