"""App factories: ``create_app(settings)`` (the shield) and ``create_model_app(settings)``
(a plain model endpoint). The model, the keys and the shield are built once, in the
lifespan, never at import."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import torch
from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from gnnbackdoor.defenses import DEFENSES, InputShield
from gnnbackdoor.errors import UserError
from gnnbackdoor.service.backends import UpstreamError, build_backend
from gnnbackdoor.service.batching import ShieldBatcher
from gnnbackdoor.service.deps import UNAUTHORIZED, check_api_key
from gnnbackdoor.service.keys import KeyStore
from gnnbackdoor.service.routes import health_router, model_router, shield_router
from gnnbackdoor.service.settings import ServiceSettings

logger = logging.getLogger(__name__)


def build_shield(settings: ServiceSettings) -> InputShield:
    cls = DEFENSES.get(settings.defense)
    if not issubclass(cls, InputShield):
        raise UserError(f"defense {settings.defense!r} is not an input shield")
    try:
        return cls(**settings.defense_params)
    except TypeError as error:
        raise UserError(f"defense {settings.defense}: {error}") from None


class BodySizeLimit:
    """Pure ASGI middleware: bodies over ``max_bytes`` get 413 before any parsing (by the
    ``Content-Length`` header, or while reading a chunked body)."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._drain(receive, 4 * self.max_bytes)
            return await self._reject(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            more = message.get("more_body", False)
            if size > self.max_bytes:
                if more:
                    await self._drain(receive, 4 * self.max_bytes)
                return await self._reject(scope, receive, send)
            chunks.append(chunk)
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    @staticmethod
    async def _drain(receive, budget: int) -> None:
        """Read (and drop) what the client is still sending, up to ``budget`` bytes, so that
        it reads our 413 instead of a reset connection."""
        while budget > 0:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return
            budget -= len(message.get("body", b""))

    async def _reject(self, scope, receive, send):
        response = JSONResponse(
            {"detail": f"request body over the {self.max_bytes}-byte limit"},
            status_code=413,
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError):
        # Body errors are found before dependencies run: without a key, say 401 first.
        if request.url.path.startswith("/v1/") and not check_api_key(request):
            return JSONResponse(
                {"detail": UNAUTHORIZED.detail}, status.HTTP_401_UNAUTHORIZED, UNAUTHORIZED.headers
            )
        messages = []
        for item in error.errors():
            where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
            text = str(item.get("msg", "invalid")).removeprefix("Value error, ")
            messages.append(f"{where}: {text}" if where else text)
        return JSONResponse(
            {"detail": "; ".join(messages[:5]) or "invalid request", "errors": _safe(error)},
            422,
        )

    @app.exception_handler(UpstreamError)
    async def upstream_error(request: Request, error: UpstreamError):
        return JSONResponse({"detail": error.detail}, error.status_code)


def _safe(error: RequestValidationError) -> list[dict]:
    """The first errors with JSON-safe fields (inputs may hold NaN, which JSON cannot)."""
    return [
        {"loc": [str(p) for p in item.get("loc", ())], "msg": str(item.get("msg", ""))}
        for item in error.errors()[:20]
    ]


def _lifespan(with_shield: bool):
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings: ServiceSettings = app.state.settings
        torch.set_num_threads(settings.torch_threads)
        app.state.keys = KeyStore.load(settings.api_keys_file) if settings.api_keys_file else None
        if app.state.keys is None:
            logger.warning("no API keys file: prediction routes are open to anyone")
        app.state.backend = build_backend(settings)
        app.state.shield = build_shield(settings) if with_shield else None
        app.state.batcher = ShieldBatcher(settings.max_batch_graphs)
        app.state.batcher.start()
        try:
            yield
        finally:
            await app.state.batcher.stop()
            if app.state.backend is not None:
                app.state.backend.close()

    return lifespan


def _new_app(settings: ServiceSettings, title: str, description: str, shield: bool) -> FastAPI:
    app = FastAPI(
        title=title,
        description=description,
        version="1",
        lifespan=_lifespan(shield),
    )
    app.state.settings = settings
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    _install_handlers(app)
    app.include_router(health_router)
    app.include_router(shield_router if shield else model_router)
    return app


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """The GraphProt shield in front of ``settings.model_dir`` or ``settings.upstream_url``."""
    return _new_app(
        settings or ServiceSettings(),
        "gnnbackdoor GraphProt shield",
        "Black-box backdoor shield for graph classifiers (GraphProt): each graph is filtered "
        "by topology and feature clustering, sampled into subgraphs, and classified by "
        "majority vote of the model's labels for the subgraphs.",
        shield=True,
    )


def create_model_app(settings: ServiceSettings | None = None) -> FastAPI:
    """A plain, unshielded endpoint for a saved model: ``{"graphs": [...]}`` ->
    ``{"labels": [...]}``."""
    return _new_app(
        settings or ServiceSettings(),
        "gnnbackdoor model endpoint",
        "Unshielded labels of a saved graph classifier (for tests and demos).",
        shield=False,
    )
