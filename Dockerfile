# The chat service: `chatbot serve` (FastAPI + uvicorn) with the default model baked in.
#   docker build -t chatbot .
#   docker run --rm -p 8000:8000 chatbot
# Serve another bundle by mounting it and pointing CHATBOT_MODEL at it:
#   docker run --rm -p 8000:8000 -v "$PWD/models/mine:/models/mine:ro" \
#       -e CHATBOT_MODEL=/models/mine chatbot
# Where no registry can be reached, build on a base made from Debian's packages (docs/docker.md):
#   scripts/docker-local-base.sh
#   docker build --network host --build-arg BASE_IMAGE=chatbot-local-base:bookworm -t chatbot .

# Any image with Python 3.11, its venv module, groupadd and useradd at the usual places will do.
# Both stages use it, so the venv's interpreter links resolve in the final image.
ARG BASE_IMAGE=python:3.11-slim

# Build stage: the venv is assembled here so the runtime image carries no pip caches, no
# build backend, no binutils and no sources beyond the installed package.
FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# strip, for the symbol tables below. Only this stage has it.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The lock file alone first: this layer (TensorFlow and friends, most of the image) stays
# cached until a dependency changes, however often the code does. requirements-serve.lock is
# what serving imports: tensorflow-cpu, no tensorflow-text, training or plotting packages.
COPY requirements-serve.lock ./
# Then what serving never reads, measured out (docs/docker.md): TensorFlow's C++ headers
# (268 MB, for building custom ops), libclang (62 MB, TensorFlow's build tooling: never
# imported), and the static symbol tables of TensorFlow's shared libraries (over 200 MB in
# libtensorflow_cc alone; the dynamic symbols that loading needs stay). Only TensorFlow's:
# libraries that auditwheel patched (numpy.libs and the like) do not survive `strip`.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install -r requirements-serve.lock \
    && /opt/venv/bin/pip uninstall --yes libclang \
    && rm -rf /opt/venv/lib/python3.11/site-packages/tensorflow/include \
    && find /opt/venv/lib/python3.11/site-packages/tensorflow -type f -name '*.so*' \
        -exec strip --strip-unneeded {} +
COPY pyproject.toml README.md ./
COPY chatbot ./chatbot
COPY serve ./serve
# --no-deps: every dependency is already pinned by the lock; pip must not re-resolve any (the
# package's metadata still names the training dependencies this image leaves out).
RUN /opt/venv/bin/pip install --no-deps . \
    && /opt/venv/bin/pip uninstall --yes pip

FROM ${BASE_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TF_CPP_MIN_LOG_LEVEL=3
# A fixed numeric id, so orchestrators can verify non-root (runAsNonRoot) without /etc/passwd.
RUN groupadd --gid 10001 chatbot \
    && useradd --uid 10001 --gid 10001 --create-home chatbot
COPY --from=build /opt/venv /opt/venv
# The shipped default model (models/default, CARD.md inside), root-owned and read-only for the
# service user: the server never writes to its model.
COPY models /app/models
# Serving settings come from CHATBOT_* variables (see serve/settings.py); listen on all
# interfaces so the published port reaches the server.
# Warm-up: one reply traces the decoding program before the server reports ready (measured in
# docs/docker.md against `all_shapes`, which compiles every batch shape's XLA program first).
ENV CHATBOT_MODEL=/app/models/default CHATBOT_HOST=0.0.0.0 CHATBOT_PORT=8000 \
    CHATBOT_WARM_UP=reply
WORKDIR /app
USER 10001:10001
EXPOSE 8000
# Liveness only (the image has no curl). uvicorn accepts connections only after the model is
# loaded and warmed up, hence the start period; CHATBOT_PORT is honoured if overridden.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('CHATBOT_PORT', '8000') + '/healthz', timeout=4)"]
# Exec form: the server is PID 1 and receives `docker stop`'s SIGTERM for a graceful shutdown.
# Extra arguments (`--model DIR`, `--port N`) are appended by `docker run IMAGE ...`.
ENTRYPOINT ["chatbot", "serve"]
