# The chat service: `chatbot serve` (FastAPI + uvicorn) with the default model baked in.
#   docker build -t chatbot .
#   docker run --rm -p 8000:8000 chatbot
# Serve another bundle by mounting it and pointing CHATBOT_MODEL at it:
#   docker run --rm -p 8000:8000 -v "$PWD/models/mine:/models/mine:ro" \
#       -e CHATBOT_MODEL=/models/mine chatbot

# Build stage: the venv is assembled here so the runtime image carries no pip caches, no
# build backend and no sources beyond the installed package.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The lock file alone first: this layer (TensorFlow and friends, most of the image) stays
# cached until a dependency changes, however often the code does.
COPY requirements.lock ./
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install -r requirements.lock
COPY pyproject.toml README.md ./
COPY chatbot ./chatbot
COPY serve ./serve
# --no-deps: every dependency is already pinned by the lock; pip must not re-resolve any.
RUN /opt/venv/bin/pip install --no-deps .

FROM python:3.11-slim
# Same base as the build stage, so the venv's interpreter links resolve.
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
# A long-lived server compiles every batch shape's decoding program before it reports ready,
# so no request waits for a compilation.
ENV CHATBOT_MODEL=/app/models/default CHATBOT_HOST=0.0.0.0 CHATBOT_PORT=8000 \
    CHATBOT_WARM_UP=all_shapes
WORKDIR /app
USER 10001:10001
EXPOSE 8000
# Liveness only (slim has no curl). uvicorn accepts connections only after the model is loaded
# and warmed up, hence the generous start period; CHATBOT_PORT is honoured if overridden.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('CHATBOT_PORT', '8000') + '/healthz', timeout=4)"]
# Exec form: the server is PID 1 and receives `docker stop`'s SIGTERM for a graceful shutdown.
# Extra arguments (`--model DIR`, `--port N`) are appended by `docker run IMAGE ...`.
ENTRYPOINT ["chatbot", "serve"]
