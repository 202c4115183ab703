"""Dependencies as ``Annotated`` aliases; tests override ``get_backend`` (a tiny model) or
``get_settings``.

They are ``async`` because none of them blocks (attribute reads, one SHA-256 per key check):
FastAPI runs a plain ``def`` dependency on its thread pool, which cost a thread hand-off per
dependency and request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from gnnbackdoor.defenses.base import InputShield
from gnnbackdoor.service.backends import ModelBackend, UpstreamBackend
from gnnbackdoor.service.batching import ShieldBatcher
from gnnbackdoor.service.keys import KeyStore
from gnnbackdoor.service.settings import ServiceSettings

Backend = ModelBackend | UpstreamBackend


async def get_settings(request: Request) -> ServiceSettings:
    return request.app.state.settings


async def get_backend(request: Request) -> Backend:
    backend = getattr(request.app.state, "backend", None)
    if backend is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "no model configured")
    return backend


async def get_shield(request: Request) -> InputShield:
    return request.app.state.shield


async def get_batcher(request: Request) -> ShieldBatcher:
    return request.app.state.batcher


def check_api_key(request: Request) -> bool:
    """Whether the request carries an accepted ``Authorization: Bearer KEY`` (always true
    when the app runs without a keys file)."""
    keys: KeyStore | None = getattr(request.app.state, "keys", None)
    if keys is None:
        return True
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip()) and keys.verify(token.strip())


UNAUTHORIZED = HTTPException(
    status.HTTP_401_UNAUTHORIZED,
    "missing or unknown API key: send 'Authorization: Bearer KEY'",
    headers={"WWW-Authenticate": "Bearer"},
)


async def require_api_key(request: Request) -> None:
    if not check_api_key(request):
        raise UNAUTHORIZED


SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]
BackendDep = Annotated[Backend, Depends(get_backend)]
ShieldDep = Annotated[InputShield, Depends(get_shield)]
BatcherDep = Annotated[ShieldBatcher, Depends(get_batcher)]
ApiKey = Annotated[None, Depends(require_api_key)]
