"""Tampered saved models: every class is refused in one line by ``load_model`` and by
``serve``/``serve-model`` (exit 2, before the server starts)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from gnnbackdoor.cli import main
from gnnbackdoor.errors import UserError
from gnnbackdoor.models.io import CONFIG_FILE, WEIGHTS_FILE, load_model


def _edit_config(folder: Path, change: Callable[[dict], None]) -> None:
    config = json.loads((folder / CONFIG_FILE).read_text())
    change(config)
    (folder / CONFIG_FILE).write_text(json.dumps(config))


def _truncate(folder: Path) -> None:
    data = (folder / WEIGHTS_FILE).read_bytes()
    (folder / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])


def _other_shape(folder: Path) -> None:
    _edit_config(folder, lambda c: c["spec"].update(hidden_channels=32))


def _string_width(folder: Path) -> None:
    _edit_config(folder, lambda c: c["spec"].update(hidden_channels="64"))


def _string_channels(folder: Path) -> None:
    _edit_config(folder, lambda c: c.update(in_channels="3"))


def _unknown_format(folder: Path) -> None:
    _edit_config(folder, lambda c: c.update(format="gnnbackdoor-model/2"))


def _non_finite(folder: Path) -> None:
    state = torch.load(folder / WEIGHTS_FILE, weights_only=True)
    next(iter(state.values())).view(-1)[0] = float("nan")
    torch.save(state, folder / WEIGHTS_FILE)


class _Payload:
    def __reduce__(self):
        return (print, ("unpickled!",))


def _pickle_payload(folder: Path) -> None:
    state = torch.load(folder / WEIGHTS_FILE, weights_only=True)
    torch.save({**state, "extra": _Payload()}, folder / WEIGHTS_FILE)


TAMPERS = {
    "truncated": (_truncate, "truncated"),
    "other shape": (_other_shape, "does not fit"),
    "edited spec type": (_string_width, "spec.hidden_channels must be int"),
    "edited channel type": (_string_channels, "in_channels' must be a positive integer"),
    "unknown format": (_unknown_format, "format 'gnnbackdoor-model/2' is not supported"),
    "non-finite weights": (_non_finite, "NaN or infinite"),
    "pickle payload": (_pickle_payload, "pickled objects other than tensors"),
}


@pytest.fixture(params=sorted(TAMPERS))
def tampered(request, model_dir, tmp_path) -> tuple[Path, str]:
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    tamper, message = TAMPERS[request.param]
    tamper(folder)
    return folder, message


def test_load_model_refuses_each_tamper_class_in_one_line(tampered, capsys):
    folder, message = tampered
    with pytest.raises(UserError) as caught:
        load_model(folder)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert "unpickled!" not in capsys.readouterr().out


@pytest.mark.parametrize("command", ["serve", "serve-model"])
def test_servers_do_not_start_on_a_tampered_model(tampered, command, api_key, capsys, monkeypatch):
    import uvicorn

    def never(*args, **kwargs):
        raise AssertionError("the server started")

    monkeypatch.setattr(uvicorn, "run", never)
    folder, message = tampered
    argv = [command, "--model", str(folder), "--api-keys", str(api_key[0]), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gnnbackdoor: error:") and message in err
    assert len(err.splitlines()) == 1


def test_an_untampered_model_still_loads(model_dir):
    model, config = load_model(model_dir)
    assert config["model"] == "gcn" and not model.training
