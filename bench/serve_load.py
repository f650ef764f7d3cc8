"""Load benchmark of the HTTP chat service: closed-loop clients against a real server, as JSON.

    python bench/serve_load.py --model models/default --clients 1 8 32 64 --seconds 15
    python bench/serve_load.py --config configs/default.yaml    # random weights, no model needed
    python bench/serve_load.py --url http://127.0.0.1:8000      # a server already running

Unless --url is given, `chatbot serve` is started on a free loopback port with the bundle from
--model, or else with a random-weight bundle built at --config's dimensions (its tokenizer is
trained on a synthetic corpus to the config's vocabulary size), and stopped at the end; other
server settings come from CHATBOT_* variables as usual.

After /readyz answers 200, every message is sent once. Then, for each --clients level, that
many closed-loop clients (each sends its next request when the previous one is answered) post
`/v1/chat` for --warmup-seconds unrecorded (a server compiling per batch shape does so there),
then for --seconds recorded: varied messages, greedy decoding of at most --max-length tokens.
Requests in flight at the end are awaited and counted; throughput is successful requests over
the time until the last one finished. Latency percentiles are over successful (2xx) requests;
`errors` counts the others by status code (or by exception name for a failed connection);
`timeouts` counts requests unanswered within --timeout. The client shares the machine with the
server and takes some CPU from it: compare numbers from the same machine only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MESSAGES = [
    "hello",
    "Hi, how are you today?",
    "What do you like to do on weekends?",
    "Can you recommend a good book?",
    "I just got back from a trip to the mountains.",
    "What's the weather like where you are?",
    "Do you want to grab lunch tomorrow?",
    "I'm so tired, work was crazy today.",
    "What time does the movie start?",
    "Thanks for your help yesterday, I really appreciate it.",
    "Have you ever been to Paris?",
    "My cat knocked a glass off the table again.",
]


@dataclass
class Level:
    """What one concurrency level measured."""

    clients: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    timeouts: int = 0
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        requests = len(self.latencies_ms) + self.errors.total() + self.timeouts
        ordered = sorted(self.latencies_ms)
        return {
            "clients": self.clients,
            "requests": requests,
            "seconds": round(self.seconds, 2),
            "requests_per_s": round(len(ordered) / self.seconds, 2) if self.seconds else 0.0,
            "p50_ms": percentile(ordered, 50),
            "p95_ms": percentile(ordered, 95),
            "p99_ms": percentile(ordered, 99),
            "errors": dict(sorted(self.errors.items())),
            "timeouts": self.timeouts,
        }


def percentile(ordered: list[float], q: float) -> float | None:
    """The q-th percentile of sorted values, interpolated between ranks; None when empty."""
    if not ordered:
        return None
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    value = ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
    return round(value, 1)


def synthetic_corpus(sentences: int = 20000, seed: int = 0) -> Iterator[str]:
    """English-looking text with enough distinct pseudo-words for any usual vocabulary size,
    plus the benchmark's own messages so they tokenize into whole pieces."""
    rng = random.Random(seed)
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"]
    words = ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(sentences)]
    yield from MESSAGES * 50
    for _ in range(sentences):
        yield " ".join(rng.choices(words, k=rng.randint(4, 14)))


def build_random_bundle(config_path: str, out: Path) -> Path:
    """A bundle with random weights at the config's dimensions (replies are gibberish, the
    compute per token is the real model's)."""
    from chatbot.benchmark import build_for_benchmark
    from chatbot.bundle import Bundle
    from chatbot.config import load_config
    from chatbot.tokenizer import Tokenizer

    config = load_config(config_path)
    tokenizer = Tokenizer.train(synthetic_corpus(), config.data.tokenizer)
    model = build_for_benchmark(config, tokenizer.vocab_size)
    card = {"note": f"random weights for bench/serve_load.py from {config_path}"}
    return Bundle(config, tokenizer, model, card=card).save(out)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def chatbot_command() -> list[str]:
    """`chatbot` from this interpreter's environment, or the module when it has no script."""
    script = shutil.which("chatbot", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "chatbot.cli"]


@contextlib.contextmanager
def running_server(
    model: str, log_path: Path, startup_timeout: float
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`chatbot serve --model MODEL` on a free loopback port until the block ends; yields its
    base URL and process once /readyz answers 200. Its output goes to `log_path`."""
    port = free_port()
    argv = [*chatbot_command(), "serve", "--model", model, "--host", "127.0.0.1"]
    argv += ["--port", str(port)]
    with log_path.open("wb") as log:
        server = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, startup_timeout, server)
        yield url, server
    except BaseException:
        sys.stderr.write(log_path.read_text(errors="replace")[-4000:])
        raise
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def wait_ready(url: str, timeout: float, server: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            raise RuntimeError(f"the server exited with status {server.returncode}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        time.sleep(0.5)
    raise TimeoutError(f"{url}/readyz did not answer 200 within {timeout:g} s")


def add_request_arguments(parser: argparse.ArgumentParser) -> None:
    """The decoding every request asks for, as `chat_body` reads it."""
    parser.add_argument(
        "--strategy",
        choices=("greedy", "sample", "beam"),
        default="greedy",
        help="decoding each request asks for; the bundle's other decoding defaults apply",
    )
    parser.add_argument("--max-length", type=int, default=32, help="reply tokens at most")
    parser.add_argument("--min-length", type=int, help="reply tokens at least (bundle default)")


def chat_body(message: str, args: argparse.Namespace) -> dict[str, Any]:
    decoding: dict[str, Any] = {"strategy": args.strategy, "max_length": args.max_length}
    if args.min_length is not None:
        decoding["min_length"] = args.min_length
    return {"message": message, "decoding": decoding}


def rotated(items: list[str], start: int) -> Iterator[str]:
    """`items` forever, beginning at index `start` (modulo its length)."""
    start %= len(items)
    return itertools.cycle(items[start:] + items[:start])


async def client_loop(
    client: httpx.AsyncClient,
    level: Level,
    messages: Iterator[str],
    args: argparse.Namespace,
    deadline: float,
) -> None:
    """One closed-loop client: the next request leaves when the previous one is answered."""
    while time.perf_counter() < deadline:
        body = chat_body(next(messages), args)
        started = time.perf_counter()
        try:
            response = await client.post("/v1/chat", json=body)
        except httpx.TimeoutException:
            level.timeouts += 1
            continue
        except httpx.TransportError as error:
            level.errors[type(error).__name__] += 1
            await asyncio.sleep(0.1)  # a refused connection must not spin
            continue
        if response.is_success:
            level.latencies_ms.append(1000 * (time.perf_counter() - started))
        else:
            level.errors[str(response.status_code)] += 1


async def run_levels(url: str, args: argparse.Namespace) -> list[Level]:
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    limits = httpx.Limits(max_connections=max(args.clients), max_keepalive_connections=None)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=args.timeout
    ) as client:
        for message in MESSAGES:  # warm-up: trace each message's shape before measuring
            response = await client.post("/v1/chat", json=chat_body(message, args))
            response.raise_for_status()
        levels = []
        for clients in args.clients:
            if args.warmup_seconds > 0:  # unrecorded: new batch shapes compile here
                await run_level(client, Level(clients), args, args.warmup_seconds)
            level = await run_level(client, Level(clients), args, args.seconds)
            levels.append(level)
            print(json.dumps(level.summary()), file=sys.stderr, flush=True)
        return levels


async def run_level(
    client: httpx.AsyncClient, level: Level, args: argparse.Namespace, seconds: float
) -> Level:
    """`level.clients` closed-loop clients for `seconds`, then until the last one finishes."""
    started = time.perf_counter()
    deadline = started + seconds
    # Each client starts at a different message, so concurrent requests differ.
    loops = [
        client_loop(client, level, rotated(MESSAGES, i), args, deadline)
        for i in range(level.clients)
    ]
    await asyncio.gather(*loops)
    level.seconds = time.perf_counter() - started
    return level


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--model", help="bundle to serve (default: random weights, see --config)")
    target.add_argument("--url", help="benchmark this running server instead of starting one")
    parser.add_argument("--config", default="configs/default.yaml", help="random bundle's dims")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--seconds", type=float, default=15.0, help="per concurrency level")
    parser.add_argument(
        "--warmup-seconds", type=float, default=5.0, help="unrecorded load before each level"
    )
    add_request_arguments(parser)
    parser.add_argument("--timeout", type=float, default=60.0, help="per request, seconds")
    parser.add_argument("--startup-timeout", type=float, default=300.0)
    parser.add_argument("--api-key", default=os.environ.get("CHATBOT_BENCH_API_KEY"))
    args = parser.parse_args()
    if min(args.clients) < 1:
        parser.error("--clients must be positive")

    load_avg = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="serve_load_") as tmp:
        if args.url:
            args.url = args.url.rstrip("/")
            model = f"server at {args.url}"
            wait_ready(args.url, args.startup_timeout)
            levels = asyncio.run(run_levels(args.url, args))
        else:
            model = args.model or f"random weights at {args.config}"
            served = args.model or str(build_random_bundle(args.config, Path(tmp) / "random"))
            log = Path(tmp) / "server.log"
            with running_server(served, log, args.startup_timeout) as (url, _):
                levels = asyncio.run(run_levels(url, args))

    summaries = [level.summary() for level in levels]
    throughput = {s["clients"]: s["requests_per_s"] for s in summaries}
    speedup = None
    if throughput.get(1) and 32 in throughput:
        speedup = round(throughput[32] / throughput[1], 2)
    result: dict[str, Any] = {
        "benchmark": "serve_load",
        "model": model,
        "url": args.url,
        "decoding": {
            "strategy": args.strategy,
            "max_length": args.max_length,
            "min_length": args.min_length,
        },
        "seconds_per_level": args.seconds,
        "warmup_seconds_per_level": args.warmup_seconds,
        "levels": summaries,
        "speedup_32_vs_1": speedup,
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.machine(),
            "python": platform.python_version(),
            "load_avg_1m_before": load_avg,
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
