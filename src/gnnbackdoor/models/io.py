"""Saving and loading trained models as weights plus a JSON config.

A saved model is a folder with ``config.json`` (registered model name, its hyper-parameters,
input/output widths, task) and ``weights.pt`` (a ``state_dict``). Loading rebuilds the module
from the registry and reads the weights with ``torch.load(weights_only=True)``, which refuses
arbitrary pickled objects. A config saved before a spec gained a field is read with that
field's legacy value (the spec's ``legacy_values``), so old models load as they were trained.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gnnbackdoor.errors import UserError
from gnnbackdoor.models.base import MODELS, ModelSpec

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"


def save_model(
    model: nn.Module,
    spec: ModelSpec,
    folder: Path,
    in_channels: int,
    out_channels: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` to ``folder`` (created if needed); returns ``folder``.

    Args:
        model: The trained module built by ``spec``.
        spec: Its registered specification.
        folder: Destination folder.
        in_channels: Node feature width it was built for.
        out_channels: Number of classes (graph classifiers) or ``None``.
        extra: More JSON-serialisable facts to keep (dataset, seed, role).
    """
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "format": "gnnbackdoor-model/1",
        "model": spec.registered_name,
        "task": spec.task,
        "spec": asdict(spec),
        "in_channels": in_channels,
        "out_channels": out_channels,
        **(extra or {}),
    }
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
    torch.save(model.state_dict(), folder / WEIGHTS_FILE)
    return folder


def load_model(folder: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a saved model in eval mode; returns ``(module, config)``.

    Raises:
        UserError: the folder lacks the files, or names an unknown model.
    """
    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise UserError(f"{folder} is not a saved model: expected {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise UserError(f"{config_path} is not valid JSON: {error}") from None
    spec_cls = MODELS.get(config["model"])
    # fields added after the model was saved take the values that reproduce it
    legacy = getattr(spec_cls, "legacy_values", {})
    spec = spec_cls(**{**legacy, **config.get("spec", {})})
    model = spec.build(int(config["in_channels"]), config.get("out_channels"))
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.eval()
    return model, config
