# Runtime image for the `chatbot` command. The serving entrypoint, the baked-in default model
# and the health check arrive with the serving issue; today the image runs the CLI.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements.lock ./
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install -r requirements.lock
COPY pyproject.toml README.md ./
COPY chatbot ./chatbot
COPY serve ./serve
RUN /opt/venv/bin/pip install --no-deps .

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
RUN useradd --create-home --uid 10001 chatbot
COPY --from=build /opt/venv /opt/venv
COPY --chown=chatbot:chatbot data /app/data
WORKDIR /app
USER chatbot
ENTRYPOINT ["chatbot"]
CMD ["--help"]
