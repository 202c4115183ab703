"""Request and response bodies of both apps (one module, as the FastAPI template keeps them).

A graph is ``{"x": [[float, ...], ...], "edge_index": [[src, ...], [dst, ...]]}``: one row of
``x`` per node (all rows of equal, non-zero width, finite float32 values) and two rows of
equal length in ``edge_index`` holding node indices ``0..n-1``.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, Strict, StrictInt, model_validator
from torch_geometric.data import Data

FiniteFloat = Annotated[float, Strict(), Field(allow_inf_nan=False)]
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class GraphIn(BaseModel):
    """One input graph."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "x": [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]],
                "edge_index": [[0, 1, 1, 2], [1, 0, 2, 1]],
            }
        }
    )

    x: list[list[FiniteFloat]] = Field(description="node features, one row per node")
    edge_index: list[list[StrictInt]] = Field(
        description="two rows: source and target node index of each directed edge"
    )
    _data: Data | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check_shapes(self) -> GraphIn:
        if not self.x:
            raise ValueError("x is empty: a graph needs at least one node")
        width = len(self.x[0])
        if width == 0:
            raise ValueError("x rows are empty: nodes need at least one feature")
        for i, row in enumerate(self.x):
            if len(row) != width:
                raise ValueError(f"x row {i} has {len(row)} features, row 0 has {width}")
        if len(self.edge_index) != 2:
            raise ValueError(
                f"edge_index must have 2 rows (sources, targets), got {len(self.edge_index)}"
            )
        src, dst = self.edge_index
        if len(src) != len(dst):
            raise ValueError(
                f"edge_index rows differ in length: {len(src)} sources, {len(dst)} targets"
            )
        n = len(self.x)
        for row_name, row in (("source", src), ("target", dst)):
            bad = next((v for v in row if v < 0 or v >= n), None)
            if bad is not None:
                raise ValueError(f"edge_index {row_name} {bad} is out of range for {n} nodes")
        x = np.asarray(self.x, dtype=np.float64)
        if np.abs(x).max(initial=0.0) > _FLOAT32_MAX:
            raise ValueError("x holds values too large for float32")
        self._data = Data(
            x=torch.from_numpy(x.astype(np.float32)),
            edge_index=torch.tensor(self.edge_index, dtype=torch.long).view(2, -1),
        )
        return self

    @property
    def num_nodes(self) -> int:
        return len(self.x)

    @property
    def num_edges(self) -> int:
        return len(self.edge_index[0])

    @property
    def width(self) -> int:
        return len(self.x[0])

    def to_data(self) -> Data:
        assert self._data is not None
        return self._data


class PredictRequest(BaseModel):
    graphs: list[GraphIn] = Field(min_length=1, description="graphs to classify, in order")


class Prediction(BaseModel):
    label: int = Field(description="shielded label (majority vote of the subgraphs)")
    votes: dict[str, int] = Field(description="subgraph votes per class label")
    removed_nodes: list[int] = Field(description="input nodes removed by the filter")


class PredictResponse(BaseModel):
    predictions: list[Prediction]


class LabelsResponse(BaseModel):
    labels: list[int]


class Health(BaseModel):
    status: str = "ok"
    mode: str = Field(description="model, upstream or none")
    defense: str | None = None
    feature_width: int | None = None


class ErrorBody(BaseModel):
    detail: str
