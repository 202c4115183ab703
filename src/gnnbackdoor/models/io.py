"""Saving and loading trained models as weights plus a JSON config.

A saved model is a folder with ``config.json`` (registered model name, its hyper-parameters,
input/output widths, task) and ``weights.pt`` (a ``state_dict``). Loading rebuilds the module
from the registry and reads the weights with ``torch.load(weights_only=True)``, which refuses
arbitrary pickled objects. A config saved before a spec gained a field is read with that
field's legacy value (the spec's ``legacy_values``), so old models load as they were trained.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import typing
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gnnbackdoor.errors import UserError
from gnnbackdoor.models.base import MODELS, ModelSpec

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"
#: The ``format`` this version writes and reads.
FORMAT = "gnnbackdoor-model/1"


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
        "format": FORMAT,
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

    Every check fails with one line (the service calls this before it binds its port).

    Raises:
        UserError: the folder lacks the files; ``config.json`` is not JSON, has another
            ``format`` than ``gnnbackdoor-model/1``, or a key of the wrong type; an unknown
            model; ``weights.pt`` is truncated or not a ``state_dict``, holds pickled objects
            other than tensors, weights of other shapes or names than the config's model, or
            non-finite weights.
    """
    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise UserError(f"{folder} is not a saved model: expected {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{config_path} is not valid JSON: {error}") from None
    spec_cls = _check_config(config, config_path)
    try:
        # fields added after the model was saved take the values that reproduce it
        legacy = getattr(spec_cls, "legacy_values", {})
        spec = spec_cls(**{**legacy, **config["spec"]})
        model = spec.build(config["in_channels"], config["out_channels"])
    except UserError as error:
        raise UserError(f"{config_path}: {error}") from None
    except (TypeError, ValueError) as error:
        raise UserError(f"{config_path}: invalid spec ({_first_line(error)})") from None
    state = _read_state(weights_path)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        detail = " ".join(str(error).split())
        raise UserError(
            f"{weights_path} does not fit the {config['model']} model {CONFIG_FILE} describes: "
            f"{detail[:300]}"
        ) from None
    model.eval()
    return model, config


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _check_config(config: Any, path: Path) -> type[ModelSpec]:
    """The spec class of a parsed ``config.json``, after checking its keys and their types."""
    if not isinstance(config, dict):
        raise UserError(f"{path} must hold a JSON object, got {type(config).__name__}")
    if config.get("format") != FORMAT:
        raise UserError(
            f"{path}: format {config.get('format')!r} is not supported (this version reads "
            f"{FORMAT!r})"
        )
    model_name = config.get("model")
    if not isinstance(model_name, str):
        raise UserError(f"{path}: 'model' must be a registered model name, got {model_name!r}")
    spec_cls = MODELS.get(model_name)
    if config.get("task") != spec_cls.task:
        raise UserError(f"{path}: 'task' must be {spec_cls.task!r} for {model_name}")
    in_channels, out_channels = config.get("in_channels"), config.get("out_channels")
    if not _is_int(in_channels) or in_channels < 1:
        raise UserError(f"{path}: 'in_channels' must be a positive integer, got {in_channels!r}")
    if spec_cls.task == "graph" and (not _is_int(out_channels) or out_channels < 1):
        raise UserError(f"{path}: 'out_channels' must be a positive integer, got {out_channels!r}")
    spec = config.get("spec")
    if not isinstance(spec, dict):
        raise UserError(f"{path}: 'spec' must be a JSON object of {model_name}'s settings")
    hints = typing.get_type_hints(spec_cls)
    fields = {f.name: hints[f.name] for f in dataclasses.fields(spec_cls) if f.init}
    for key, value in spec.items():
        if key not in fields:
            raise UserError(f"{path}: spec.{key} is not a setting of {model_name}")
        if not _has_type(value, fields[key]):
            raise UserError(
                f"{path}: spec.{key} must be {getattr(fields[key], '__name__', fields[key])}, "
                f"got {value!r}"
            )
    return spec_cls


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _has_type(value: Any, annotation: Any) -> bool:
    """Whether a JSON value fits a spec field's annotation (int, float, bool, str)."""
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return _is_int(value)
    if annotation is float:
        return _is_int(value) or (isinstance(value, float) and math.isfinite(value))
    if annotation is str:
        return isinstance(value, str)
    return True  # other annotations: the spec's own checks decide


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    """The ``state_dict`` in ``path``: tensors only, all finite."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights_only" in str(error) or "Unsupported global" in str(error):
            raise UserError(
                f"{path} holds pickled objects other than tensors; refused (only weights load)"
            ) from None
        raise UserError(f"{path} is not a saved state_dict ({_first_line(error)})") from None
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        raise UserError(
            f"{path} is truncated or not a saved state_dict ({_first_line(error)})"
        ) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise UserError(f"{path} is not a state_dict of named tensors")
    bad = next(
        (k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())),
        None,
    )
    if bad is not None:
        raise UserError(f"{path}: weight {bad} holds NaN or infinite values")
    return state
