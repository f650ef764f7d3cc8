"""Server settings, read from `CHATBOT_*` environment variables and a `.env` file, so one image
runs anywhere; tests build `Settings(...)` directly."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from chatbot.config import Runtime

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class Settings(BaseSettings):
    """What the server loads, where it listens and the limits every request must respect.

    `api_keys` and `cors_origins` are comma-separated in the environment
    (`CHATBOT_API_KEYS=key1,key2`); an empty `api_keys` turns authentication off. Requests are
    decoded in micro-batches of up to `max_batch_size`, gathered for `batch_window_ms`; beyond
    `max_queue` waiting requests the server answers 429. The defaults favour latency: a request
    waits at most for the batch being decoded and then decodes in a small batch, so under
    overload the replies that are accepted stay close to a lone request's latency, and a small
    batch already gives most of a large one's throughput on a CPU (`bench/overload.py`,
    `bench/serve_load.py`). Raise both for throughput at the cost of latency.
    Sessions idle for `session_ttl_s` are forgotten, and each keeps its newest
    `session_max_turns` turns. They live in this process (`session_store="memory"`, at most
    `max_sessions` of them) unless `session_store` is a Redis URL (`redis://host:port/db`),
    where every replica shares them. With `runtime="lite"` a request decoded on its own (any load
    short of a queue) runs as a TensorFlow Lite program, faster than XLA for one reply
    (`bench/decoding_speed.py`); batches of several requests run in TensorFlow either way.

    A request body over `max_body_bytes` is refused with 413 before it is parsed (one with a
    larger `Content-Length` before any of it is read), so the message and history limits are not
    the first check a 100 MB body meets. Keep it above the largest body those limits allow: with
    the defaults, 2000 characters x 51 turns of non-ASCII text escaped as JSON `\\uXXXX` (6 bytes
    a character) is about 0.6 MB, under the default 1 MiB.
    """

    model_config = SettingsConfigDict(env_prefix="CHATBOT_", env_file=".env", extra="ignore")

    model: str = "models/default"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_message_chars: int = Field(default=2000, ge=1)
    max_history_turns: int = Field(default=50, ge=0)
    max_length: int = Field(default=128, ge=1)
    max_beam_width: int = Field(default=16, ge=1)
    max_n_best: int = Field(default=8, ge=1)
    max_n_samples: int = Field(default=64, ge=1)
    api_keys: Annotated[list[str], NoDecode] = []
    cors_origins: Annotated[list[str], NoDecode] = []
    max_body_bytes: int = Field(default=1_048_576, ge=1)
    request_timeout_s: float = Field(default=30.0, gt=0.0)
    jit_compile: bool | Literal["auto"] = "auto"
    xla_max_rows: int = Field(default=32, ge=0)
    runtime: Runtime = "lite"
    warm_up: Literal["reply", "all_shapes"] = "reply"
    max_batch_size: int = Field(default=4, ge=1)
    batch_window_ms: float = Field(default=5.0, ge=0.0)
    max_queue: int = Field(default=4, ge=1)
    session_ttl_s: float = Field(default=1800.0, gt=0.0)
    max_sessions: int = Field(default=10_000, ge=1)
    session_max_turns: int = Field(default=20, ge=0)
    session_store: str = "memory"
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("session_store")
    @classmethod
    def _memory_or_redis(cls, value: str) -> str:
        if value != "memory" and not value.startswith(REDIS_SCHEMES):
            raise ValueError(
                "must be 'memory' or a Redis URL: redis://host:port/db (rediss:// for TLS, "
                "unix:///path/to/socket?db=0)"
            )
        return value
