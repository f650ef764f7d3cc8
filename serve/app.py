"""The app factory and the uvicorn entry point.

`create_app` wires settings, routers, error handlers and middleware; the model is loaded (unless
a bot is given, as tests do), warmed up and put behind a micro-batcher in the lifespan, before
the first request is served.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import uvicorn
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from chatbot.bot import Chatbot
from serve.batcher import MicroBatcher
from serve.deps import require_api_key
from serve.errors import install_error_handlers
from serve.limits import BodyLimit, ShedWhenFull
from serve.metrics import Metrics
from serve.observe import Observe, log_config
from serve.redis_sessions import RedisSessionStore
from serve.routes import chat, health, metrics, models, openai, page, sessions
from serve.sessions import MemorySessionStore, SessionStore
from serve.settings import Settings

log = logging.getLogger(__name__)

WARM_UP_MESSAGE = "hello"

# uvicorn options for a server that may face clients directly. Its default parser (httptools,
# installed with uvicorn[standard]) buffers a header of any size, so one connection sending an
# endless header line holds that much memory; h11 refuses a request line and headers over
# 16 KiB with 400. Slow clients cost a connection each and block nobody (everything waits on
# the event loop, and no thread is held before the body is in), so there is no
# `limit_concurrency`: a cap on connections would let a few idle sockets turn everyone else
# away with 503, and the batcher's queue (429) already bounds the work. uvicorn has no
# timeout for slow headers or bodies: put a proxy with one (nginx `client_header_timeout`) in
# front when clients are untrusted.
CONNECTION_LIMITS: dict[str, Any] = {
    "http": "h11",
    "h11_max_incomplete_event_size": 16 * 1024,
    "timeout_keep_alive": 5,
}


async def _warm_up(app: FastAPI) -> None:
    """One reply, through the batcher like any request, traces the default decoding graph;
    with `warm_up="all_shapes"` every batch shape's XLA program is compiled too (tens of
    seconds), so no request waits for a compilation later. Readiness waits for it; a failure
    is logged and leaves the server alive but not ready."""
    settings: Settings = app.state.settings
    try:
        bot = app.state.bot
        await app.state.batcher.submit(WARM_UP_MESSAGE, [], bot.settings())
        if settings.warm_up == "all_shapes":
            compile_all = partial(app.state.bot.compile_for_serving, settings.max_batch_size)
            shapes = await anyio.to_thread.run_sync(compile_all)
            log.info("compiled %d batch shapes", shapes, extra={"shapes": shapes})
    except Exception:
        log.exception("warm-up reply failed; /readyz stays 503")
        return
    app.state.ready = True


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    if app.state.bot is None:
        load = partial(
            Chatbot.load,
            settings.model,
            jit_compile=settings.jit_compile,
            xla_max_rows=settings.xla_max_rows,
            runtime=settings.runtime,
        )
        app.state.bot = await anyio.to_thread.run_sync(load)
    batcher = MicroBatcher(
        app.state.bot,
        max_batch_size=settings.max_batch_size,
        window_s=settings.batch_window_ms / 1000,
        max_queue=settings.max_queue,
        metrics=app.state.metrics,
    )
    await batcher.start()
    app.state.batcher = batcher
    await _warm_up(app)
    yield
    app.state.ready = False
    app.state.batcher = None
    await batcher.stop()
    await app.state.sessions.aclose()


def _session_store(settings: Settings, model_name: str) -> SessionStore:
    """Where `settings.session_store` says sessions live: this process, or Redis (keys
    namespaced by `model_name`)."""
    if settings.session_store == "memory":
        return MemorySessionStore(
            ttl_s=settings.session_ttl_s,
            max_sessions=settings.max_sessions,
            max_turns=settings.session_max_turns,
        )
    return RedisSessionStore.from_url(
        settings.session_store,
        namespace=model_name,
        ttl_s=settings.session_ttl_s,
        max_turns=settings.session_max_turns,
    )


def create_app(settings: Settings | None = None, bot: Chatbot | None = None) -> FastAPI:
    """The HTTP app for `settings` (from the environment when None), serving `bot` when given
    or else the bundle at `settings.model`."""
    settings = settings or Settings()
    app = FastAPI(title="chatbot", lifespan=_lifespan)
    app.state.settings = settings
    app.state.bot = bot
    app.state.batcher = None
    app.state.ready = False
    app.state.metrics = Metrics()
    app.state.model_name = Path(settings.model).resolve().name
    app.state.sessions = _session_store(settings, app.state.model_name)
    # what an OpenAI request's `model` may say: the name, or the path the server was given
    app.state.model_names = frozenset(
        {app.state.model_name, settings.model, str(Path(settings.model).resolve())}
    )
    install_error_handlers(app)
    replying = {
        route.path
        for router in (chat.router, openai.router)
        for route in router.routes
        if "POST" in getattr(route, "methods", ())
    }
    app.add_middleware(ShedWhenFull, paths=replying)  # inside BodyLimit: drains a bounded body
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)  # inside CORS and Observe
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(Observe, metrics=app.state.metrics)
    guarded = [Depends(require_api_key)]
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(page.router)
    app.include_router(models.router, dependencies=guarded)
    app.include_router(chat.router, dependencies=guarded)
    app.include_router(openai.router, dependencies=guarded)
    app.include_router(sessions.router, dependencies=guarded)
    return app


def serve(settings: Settings, workers: int = 1) -> None:
    """Run the app under uvicorn at `settings.host`:`settings.port` until interrupted. With
    several `workers`, each process loads its own copy of the model and reads its settings
    from the environment, so the given ones are exported there first."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": log_config(settings.log_format, settings.log_level),
        "access_log": False,
        **CONNECTION_LIMITS,
    }
    if workers == 1:
        uvicorn.run(create_app(settings), **options)
        return
    os.environ.update(settings_environment(settings))
    uvicorn.run("serve.app:create_app", factory=True, workers=workers, **options)


def settings_environment(settings: Settings) -> dict[str, str]:
    """`settings` as the CHATBOT_* variables that recreate them in another process."""
    prefix = Settings.model_config["env_prefix"]
    environment = {}
    for name, value in settings.model_dump().items():
        if isinstance(value, list):
            value = ",".join(value)
        elif isinstance(value, bool):
            value = str(value).lower()
        environment[f"{prefix}{name.upper()}"] = str(value)
    return environment
