"""Service settings (pydantic-settings): constructor arguments, or environment variables
prefixed ``GNNBACKDOOR_SERVICE_`` (e.g. ``GNNBACKDOOR_SERVICE_MAX_GRAPHS=32``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Settings of both apps.

    Attributes:
        model_dir: A model saved by ``--save-model`` (weights + JSON config), loaded at start.
        upstream_url: Base URL of an upstream endpoint answering ``POST /v1/predict``
            ``{"graphs": [...]}`` with ``{"labels": [...]}`` (used instead of ``model_dir``).
        upstream_api_key: Sent upstream as ``Authorization: Bearer ...`` when set.
        upstream_timeout_s: Connect/read/write timeout of one upstream call (504 after it).
        defense: Registered input shield (``graphprot-r``, ``graphprot-t``, ``graphprot-tf``).
        defense_params: Its parameters, e.g. ``{"num_subgraphs": 7}``.
        api_keys_file: Hashes of the accepted API keys (``gnnbackdoor keys add FILE``);
            ``None`` turns authentication off (only sensible for ``serve-model`` on loopback).
        feature_width: Node feature width every graph must have; from the saved model when
            ``None`` (upstream mode: then only checked to be equal within a request).
        max_body_bytes: Larger request bodies get 413.
        max_graphs: Graphs per request (413 above).
        max_nodes: Nodes per graph (413 above).
        max_edges: Edges (columns of ``edge_index``) per graph (413 above).
        max_batch_graphs: Most graphs of concurrent requests merged into one shield call.
        torch_threads: torch CPU threads of the server process.
    """

    model_config = SettingsConfigDict(env_prefix="GNNBACKDOOR_SERVICE_", extra="ignore")

    model_dir: Path | None = None
    upstream_url: str | None = None
    upstream_api_key: str | None = None
    upstream_timeout_s: float = Field(5.0, gt=0)
    defense: str = "graphprot-tf"
    defense_params: dict[str, Any] = Field(default_factory=dict)
    api_keys_file: Path | None = None
    feature_width: int | None = Field(None, ge=1)
    max_body_bytes: int = Field(1_048_576, ge=1)
    max_graphs: int = Field(64, ge=1)
    max_nodes: int = Field(1_000, ge=1)
    max_edges: int = Field(20_000, ge=0)
    max_batch_graphs: int = Field(256, ge=1)
    torch_threads: int = Field(1, ge=1)


def export_to_environment(settings: ServiceSettings) -> None:
    """Put ``settings`` into ``GNNBACKDOOR_SERVICE_*`` environment variables, so that worker
    processes started by uvicorn rebuild the same settings with ``ServiceSettings()``."""
    prefix = settings.model_config.get("env_prefix", "")
    for name, value in settings.model_dump(mode="json").items():
        key = f"{prefix}{name}".upper()
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value if isinstance(value, str) else json.dumps(value)
