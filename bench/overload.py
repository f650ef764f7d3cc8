"""Overload soak: twice the sustainable request rate for a while, then recovery, as JSON.

    python bench/overload.py [--model DIR | --config configs/default.yaml] [--seconds 60]
        [--max-batch-size N] [--max-queue N] [--strategy greedy|sample|beam]

Starts `chatbot serve` on a free loopback port (the server's own batch and queue limits unless
given, every batch shape compiled before readiness), then:

1. idle: one closed-loop client for `--idle-seconds`: the unloaded latency;
2. baseline: `--clients` closed-loop clients (by default as many as a full batch plus a full
   queue, so none is refused) for `--baseline-seconds`; their throughput is the sustainable
   rate and their p99 the latency of a busy but not overloaded server;
3. overload: open-loop arrivals (Poisson) at `--factor` times that rate for `--seconds`, each
   request on its own, as real users would keep arriving; a request's latency counts from its
   scheduled arrival, so a load generator that falls behind cannot hide queueing (no
   coordinated omission); the server's resident memory is sampled all along;
4. recovery: once the load stops, one request at a time until one is answered within the
   idle p99; the time that takes is the recovery time.

It reports how many requests were shed (429/503) and whether each carried `Retry-After`, the
p50/p99 of the accepted ones against the idle and baseline p99, the peak resident memory, and
the recovery time. Every request is bounded by `--timeout` from end to end, and the run by the
phase lengths.

The load comes from a minimal HTTP/1.1 keep-alive client written here rather than httpx: on a
2-core machine the load generator shares the CPU with the server it measures, and httpx spends
about a millisecond of CPU per request, which at a few hundred requests a second starved the
server and the generator alike and measured the client, not the service.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import (  # a sibling script, not a package
    MESSAGES,
    add_request_arguments,
    build_random_bundle,
    chat_body,
    percentile,
    rotated,
    running_server,
)

from serve.settings import Settings

SHED = (429, 503)


class RawClient:
    """POSTs JSON over a pool of keep-alive loopback connections, parsing only the status line
    and headers and skipping the body: a few tens of microseconds of CPU per request."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    def request(self, path: str, body: dict[str, Any]) -> bytes:
        payload = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        return head.encode() + payload

    async def send(self, request: bytes) -> tuple[int, dict[str, str]]:
        """Status and lower-cased headers; raises TimeoutError past `timeout` in all."""
        async with asyncio.timeout(self.timeout):
            while True:
                reused = bool(self._idle)
                reader, writer = (
                    self._idle.pop()
                    if reused
                    else await asyncio.open_connection(self.host, self.port)
                )
                try:
                    answer = await self._exchange(reader, writer, request)
                except (ConnectionError, asyncio.IncompleteReadError):
                    writer.close()
                    if reused:  # the server closed an idle keep-alive connection: new one
                        continue
                    raise
                except BaseException:
                    writer.close()
                    raise
                status, headers = answer
                if headers.get("connection", "").lower() == "close":
                    writer.close()
                else:
                    self._idle.append((reader, writer))
                return status, headers

    @staticmethod
    async def _exchange(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> tuple[int, dict[str, str]]:
        writer.write(request)
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionResetError("connection closed before a response")
        headers = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        await reader.readexactly(int(headers.get("content-length", "0")))
        return int(status_line.split()[1]), headers

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


@dataclass
class Tally:
    """What one phase measured: latencies of answered (200) requests, in milliseconds."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    shed_with_retry_after: int = 0
    timeouts: int = 0
    failures: Counter[str] = field(default_factory=Counter)

    async def one(self, client: RawClient, request: bytes, since: float) -> None:
        try:
            status, headers = await client.send(request)
        except TimeoutError:
            self.timeouts += 1
            return
        except OSError as error:
            self.failures[type(error).__name__] += 1
            return
        self.statuses[str(status)] += 1
        if status == 200:
            self.latencies_ms.append(1000 * (time.perf_counter() - since))
        elif status in SHED and "retry-after" in headers:
            self.shed_with_retry_after += 1

    def summary(self, seconds: float) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)
        return {
            "requests": self.statuses.total() + self.timeouts + self.failures.total(),
            "seconds": round(seconds, 2),
            "answered_per_s": round(len(ordered) / seconds, 2),
            "statuses": dict(sorted(self.statuses.items())),
            "timeouts": self.timeouts,
            "failures": dict(self.failures),
            "p50_ms": percentile(ordered, 50),
            "p99_ms": percentile(ordered, 99),
        }


def requests_for(client: RawClient, args: argparse.Namespace) -> list[bytes]:
    return [client.request("/v1/chat", chat_body(message, args)) for message in MESSAGES]


async def closed_loop(
    url: str, clients: int, seconds: float, args: argparse.Namespace
) -> dict[str, Any]:
    """`clients` clients, each sending its next request when the previous one is answered."""
    tally = Tally()
    deadline = time.perf_counter() + seconds

    async def loop(index: int) -> None:
        client = RawClient(url, args.timeout)
        requests: Iterator[bytes] = rotated(requests_for(client, args), index)
        while time.perf_counter() < deadline:
            await tally.one(client, next(requests), time.perf_counter())
        client.close()

    started = time.perf_counter()
    await asyncio.gather(*(loop(i) for i in range(clients)))
    return {"clients": clients, **tally.summary(time.perf_counter() - started)}


async def open_loop(url: str, rate: float, args: argparse.Namespace) -> dict[str, Any]:
    """Poisson arrivals at `rate` requests/s for `args.seconds`, however the server keeps up."""
    rng = random.Random(0)
    tally = Tally()
    client = RawClient(url, args.timeout)
    requests = requests_for(client, args)
    tasks = []
    started = arrival = time.perf_counter()
    deadline = arrival + args.seconds
    while arrival < deadline:  # arrivals on a fixed schedule: a slow loop catches up, not drifts
        wait = arrival - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(tally.one(client, rng.choice(requests), arrival)))
        arrival += rng.expovariate(rate)
    await asyncio.gather(*tasks)
    client.close()
    shed = sum(tally.statuses[str(status)] for status in SHED)
    return {
        "offered_per_s": round(len(tasks) / args.seconds, 2),
        **tally.summary(time.perf_counter() - started),
        "shed_share": round(shed / len(tasks), 3) if tasks else 0.0,
        "shed_with_retry_after": tally.shed_with_retry_after,
    }


async def recovery_seconds(url: str, within_ms: float, args: argparse.Namespace) -> float | None:
    """Seconds from the end of the overload until a lone request is answered within `within_ms`."""
    client = RawClient(url, args.timeout)
    request = requests_for(client, args)[0]
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < args.timeout:
            sent = time.perf_counter()
            status, _ = await client.send(request)
            if status == 200 and 1000 * (time.perf_counter() - sent) <= within_ms:
                return round(time.perf_counter() - started, 2)
            await asyncio.sleep(0.2)
        return None
    finally:
        client.close()


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def sample_memory(pid: int, peak: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], rss_mb(pid))
        await asyncio.sleep(0.25)


def ratio(value: float | None, reference: float | None) -> float | None:
    return round(value / reference, 2) if value and reference else None


async def soak(url: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    await closed_loop(url, args.clients, args.warmup_seconds, args)  # new batch shapes settle
    idle = await closed_loop(url, 1, args.idle_seconds, args)
    baseline = await closed_loop(url, args.clients, args.baseline_seconds, args)
    idle_rss = rss_mb(pid)
    peak, stop = [idle_rss], asyncio.Event()
    sampler = asyncio.create_task(sample_memory(pid, peak, stop))
    loaded = await open_loop(url, args.factor * baseline["answered_per_s"], args)
    stop.set()
    await sampler
    recovered = await recovery_seconds(url, idle["p99_ms"], args)
    return {
        "idle": idle,
        "baseline": baseline,
        "overload": loaded,
        "accepted_p99_vs_idle_p99": ratio(loaded["p99_ms"], idle["p99_ms"]),
        "accepted_p99_vs_baseline_p99": ratio(loaded["p99_ms"], baseline["p99_ms"]),
        "rss_mb": {"before": round(idle_rss, 1), "peak": round(peak[0], 1)},
        "recovery_s": recovered,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="bundle to serve (default: random weights, see --config)")
    parser.add_argument("--config", default="configs/default.yaml", help="random bundle's dims")
    parser.add_argument(
        "--clients", type=int, help="baseline closed-loop clients (default: batch size + queue)"
    )
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--baseline-seconds", type=float, default=15.0)
    parser.add_argument("--warmup-seconds", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=60.0, help="overload duration")
    parser.add_argument("--factor", type=float, default=2.0, help="offered / sustainable rate")
    parser.add_argument(
        "--max-batch-size", type=int, help="CHATBOT_MAX_BATCH_SIZE (server default)"
    )
    parser.add_argument("--max-queue", type=int, help="CHATBOT_MAX_QUEUE (server default)")
    add_request_arguments(parser)
    parser.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    parser.add_argument("--startup-timeout", type=float, default=400.0)
    args = parser.parse_args()

    limits = {"CHATBOT_MAX_BATCH_SIZE": args.max_batch_size, "CHATBOT_MAX_QUEUE": args.max_queue}
    os.environ.update({name: str(value) for name, value in limits.items() if value is not None})
    os.environ.update(CHATBOT_WARM_UP="all_shapes", CHATBOT_LOG_LEVEL="warning")
    served_with = Settings()  # what the server will read from the same environment
    if args.clients is None:  # enough to keep every batch full, too few to be refused
        args.clients = served_with.max_batch_size + served_with.max_queue
    with tempfile.TemporaryDirectory(prefix="overload_") as tmp:
        served = args.model or str(build_random_bundle(args.config, Path(tmp) / "random"))
        with running_server(served, Path(tmp) / "server.log", args.startup_timeout) as (
            url,
            server,
        ):
            result = asyncio.run(soak(url, server.pid, args))
    print(
        json.dumps(
            {
                "benchmark": "overload",
                "model": args.model or f"random weights at {args.config}",
                "factor": args.factor,
                "max_batch_size": served_with.max_batch_size,
                "max_queue": served_with.max_queue,
                "strategy": args.strategy,
                "overload_seconds": args.seconds,
                **result,
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
