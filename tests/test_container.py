"""The Docker image for real: built, run with a published port, asked for replies, checked for
its user, health check and read-only root filesystem, given another bundle, stopped mid-request.

Marked `container` (select with `pytest -m container`, leave out with `-m "not container"`).
Needs the Docker CLI and either a running engine or root and `dockerd` (started here, and
stopped again at the end). The base image is `$CHATBOT_DOCKER_BASE` when set (for example
`python:3.11-slim` where a registry can be reached); otherwise the local base that
`scripts/docker-local-base.sh` makes from Debian's packages, made here if missing and kept as a
cache. Everything else made here (the images, the containers) is removed at the end. Where the
tools are missing the tests skip, except under CI (`CI` set), where they fail: `.ci/run`
installs them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.container, pytest.mark.timeout(2400)]

ROOT = Path(__file__).resolve().parents[1]
LOCAL_BASE = os.environ.get("CHATBOT_LOCAL_BASE", "chatbot-local-base:bookworm")
READY_TIMEOUT_S = 180.0
BUILD_TIMEOUT_S = 1800


def unavailable(reason: str) -> None:
    """Skip on a developer's machine; fail in CI, which is meant to have everything."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI installs it: see .ci/run)")
    pytest.skip(reason)


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        pytest.fail(f"docker {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def engine_answers() -> bool:
    try:
        return (
            docker("info", "--format", "{{.ServerVersion}}", timeout=30, check=False).returncode
            == 0
        )
    except subprocess.TimeoutExpired:
        return False


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Iterator[None]:
    """A Docker engine: the running one, or a `dockerd` started here and stopped afterwards."""
    if shutil.which("docker") is None:
        unavailable("the docker CLI is not installed (Debian: apt-get install docker.io)")
    if engine_answers():
        yield
        return
    dockerd = shutil.which("dockerd") or shutil.which("dockerd", path="/usr/sbin:/usr/bin")
    if dockerd is None or os.geteuid() != 0:
        unavailable("no Docker engine is running, and dockerd cannot be started (needs root)")
    log = tmp_path_factory.mktemp("dockerd") / "dockerd.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [dockerd], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 90
        while not engine_answers():
            if daemon.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dockerd did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(1)
        yield
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


@pytest.fixture(scope="module")
def base_image(engine) -> str:
    """The image both stages are built FROM; the local one is made once and kept."""
    chosen = os.environ.get("CHATBOT_DOCKER_BASE")
    if chosen:
        return chosen
    if docker("image", "inspect", LOCAL_BASE, check=False).returncode != 0:
        if shutil.which("debootstrap") is None and shutil.which("debootstrap", path="/usr/sbin"):
            os.environ["PATH"] += os.pathsep + "/usr/sbin"
        if shutil.which("debootstrap") is None or os.geteuid() != 0:
            unavailable(f"{LOCAL_BASE} is missing and making it needs root and debootstrap")
        made = subprocess.run(
            ["bash", str(ROOT / "scripts" / "docker-local-base.sh"), "--tag", LOCAL_BASE],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
        assert made.returncode == 0, made.stdout + made.stderr
    return LOCAL_BASE


@pytest.fixture(scope="module")
def image(base_image) -> Iterator[str]:
    """The image, built from this checkout with the Dockerfile's own commands; the build stage
    is tagged too so that both can be removed afterwards."""
    tag = f"chatbot-test-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}  # the classic builder: no buildx plugin needed
    made: list[str] = []
    try:
        for target, name in (("build", f"{tag}-build:latest"), (None, f"{tag}:latest")):
            command = ["docker", "build", "--network", "host", "--build-arg"]
            command += [f"BASE_IMAGE={base_image}", "--tag", name, "--force-rm"]
            command += ["--target", target] if target else []
            built = subprocess.run(
                [*command, str(ROOT)],
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT_S,
                env=env,
                check=False,
            )
            assert built.returncode == 0, (built.stdout + built.stderr)[-5000:]
            made.append(name)
        yield made[-1]
    finally:
        for name in reversed(made):
            docker("image", "rm", "--force", name, check=False)


@dataclass
class Running:
    id: str
    url: str
    started: float  # time.monotonic() just before `docker run`
    ready_after_s: float


def start(image: str, *options: str) -> Running:
    started = time.monotonic()
    run = docker(
        "run", "--detach", "--pull", "never", "--publish", "127.0.0.1::8000", *options, image
    )
    container = run.stdout.strip()
    address = docker("port", container, "8000/tcp").stdout.splitlines()[0].strip()
    url = f"http://{address}"
    deadline = started + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        state = docker("inspect", "--format", "{{.State.Status}}", container).stdout.strip()
        if state != "running":
            logs = docker("logs", container, check=False)
            pytest.fail(f"the container is {state}:\n{(logs.stdout + logs.stderr)[-5000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return Running(container, url, started, time.monotonic() - started)
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    logs = docker("logs", container, check=False)
    pytest.fail(
        f"/readyz not 200 within {READY_TIMEOUT_S:g} s:\n{(logs.stdout + logs.stderr)[-5000:]}"
    )


def remove(container: Running) -> None:
    docker("rm", "--force", "--volumes", container.id, check=False)


@pytest.fixture(scope="module")
def served(image) -> Iterator[Running]:
    """The image as shipped, with a read-only root filesystem: only /tmp is writable (a
    tmpfs), which TensorFlow Lite's converter and Keras' config need."""
    container = start(image, "--read-only", "--tmpfs", "/tmp")
    try:
        yield container
    finally:
        remove(container)


def test_the_image_serves_chat(served):
    print(f"ready {served.ready_after_s:.1f} s after docker run")
    reply = httpx.post(f"{served.url}/v1/chat", json={"message": "hello"}, timeout=60)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert isinstance(body["reply"], str) and body["reply"]
    assert body["model"] == "default"


def test_the_image_serves_the_openai_route(served):
    request = {"model": "default", "messages": [{"role": "user", "content": "How are you?"}]}
    answer = httpx.post(f"{served.url}/v1/chat/completions", json=request, timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert isinstance(body["choices"][0]["message"]["content"], str)


def test_the_server_runs_as_uid_10001(served):
    assert docker("exec", served.id, "id", "-u").stdout.strip() == "10001"
    status = docker("exec", served.id, "cat", "/proc/1/status").stdout
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert set(uids) == {"10001"}, status  # PID 1, the server itself: real, effective, saved


def test_the_root_filesystem_is_read_only(served):
    assert (
        docker("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", served.id).stdout.strip()
        == "true"
    )
    for path in ("/app/probe", "/opt/venv/probe", "/home/chatbot/probe"):
        touched = docker("exec", served.id, "touch", path, check=False)
        assert touched.returncode != 0 and "Read-only file system" in touched.stderr, path


def test_the_healthcheck_reaches_healthy(served):
    deadline = time.monotonic() + 120
    while True:
        health = json.loads(
            docker("inspect", "--format", "{{json .State.Health}}", served.id).stdout
        )
        if health["Status"] == "healthy":
            break
        assert health["Status"] == "starting", health
        assert time.monotonic() < deadline, health
        time.sleep(1)
    assert health["Log"][-1]["ExitCode"] == 0


def test_a_mounted_bundle_named_by_chatbot_model_is_served(image, tiny_bundle, tmp_path):
    # pytest's tmp folders are private to root; the server (uid 10001) must read the bundle.
    mine = tmp_path / "mine"
    shutil.copytree(tiny_bundle, mine)
    for path in [tmp_path, *mine.rglob("*"), mine]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    container = start(
        image,
        "--volume",
        f"{mine}:/models/mine:ro",
        "--env",
        "CHATBOT_MODEL=/models/mine",
    )
    try:
        reply = httpx.post(f"{container.url}/v1/chat", json={"message": "hello"}, timeout=60)
        assert reply.status_code == 200, reply.text
        assert reply.json()["model"] == "mine"
        listed = httpx.get(f"{container.url}/v1/models", timeout=10).json()
        assert [m["id"] for m in listed["data"]] == ["mine"]
    finally:
        remove(container)


# A reply that takes seconds on this model: the widest beam the server allows, forced to the
# longest length, in a shape no warm-up traced.
SLOW = {
    "message": "Tell me everything about your day.",
    "decoding": {
        "strategy": "beam",
        "beam_width": 16,
        "n_best": 8,
        "min_length": 128,
        "max_length": 128,
    },
}


def test_docker_stop_answers_the_request_in_flight(served):
    """Last of the `served` tests: SIGTERM from `docker stop` lets the request being decoded
    finish and answer before the server exits, with status 0."""
    outcome: dict[str, object] = {}

    def ask() -> None:
        try:
            outcome["response"] = httpx.post(f"{served.url}/v1/chat", json=SLOW, timeout=120)
        except httpx.HTTPError as error:
            outcome["error"] = error
        outcome["answered"] = time.monotonic()

    asking = threading.Thread(target=ask)
    asking.start()
    time.sleep(1.0)  # the request is in; its decoding takes several seconds
    assert "answered" not in outcome, "the request finished before the stop: make SLOW slower"
    stopping = time.monotonic()
    docker("stop", "--time", "60", served.id, timeout=120)
    asking.join(timeout=120)
    assert "error" not in outcome, outcome.get("error")
    response = outcome["response"]
    assert isinstance(response, httpx.Response)
    assert response.status_code == 200, response.text
    assert len(response.json()["candidates"]) == 8
    assert outcome["answered"] > stopping  # type: ignore[operator]
    state = json.loads(docker("inspect", "--format", "{{json .State}}", served.id).stdout)
    logs = docker("logs", served.id)
    assert state["ExitCode"] == 0, (logs.stdout + logs.stderr)[-5000:]
    assert not state["OOMKilled"]
    assert "Finished server process" in logs.stdout + logs.stderr
