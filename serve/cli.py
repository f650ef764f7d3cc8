"""The `chatbot serve` command, owned by the server package.

`chatbot.cli` imports this module only while it builds its parser (see `SERVER_COMMAND`
there), so the library never depends on the server: `import chatbot` loads no web framework,
and an install without `serve` simply has no `serve` command. This module itself imports
only `argparse` at load time; the app and its settings load when the command runs.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add `serve` to the `commands` subparsers of the `chatbot` CLI."""
    srv = commands.add_parser(
        "serve",
        help="serve a model over HTTP (FastAPI + uvicorn)",
        description="Run the chat service; settings also come from CHATBOT_* environment "
        "variables and a .env file (CHATBOT_MODEL, CHATBOT_PORT, CHATBOT_API_KEYS, ...).",
    )
    srv.add_argument("--model", metavar="DIR", help="a model bundle (CHATBOT_MODEL)")
    srv.add_argument("--host", metavar="HOST", help="address to listen on (127.0.0.1)")
    srv.add_argument("--port", type=int, metavar="PORT", help="port (8000)")
    srv.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="server processes, each with its own copy of the model (1)",
    )
    srv.set_defaults(handler=run)
    return srv


def run(args: argparse.Namespace) -> int:
    from serve.app import serve
    from serve.settings import Settings

    overrides = {"model": args.model, "host": args.host, "port": args.port}
    settings = Settings(**{key: value for key, value in overrides.items() if value is not None})
    print(f"Serving {settings.model} at http://{settings.host}:{settings.port}", flush=True)
    serve(settings, workers=args.workers)
    return 0
