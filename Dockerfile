# syntax=docker/dockerfile:1.7
# One image for every pawstream role, chosen by the command:
#   docker run pawstream pawstream worker | pawstream api | pawstream monitor
#   docker run -v "$PWD:/workspace" -w /workspace pawstream dvc repro      (training, on a mounted repo)
# Build: docker build -t pawstream .

ARG PYTHON_VERSION=3.11
ARG DEBIAN_RELEASE=bookworm

# ---------------------------------------------------------------------------------------------------
# builder: a venv in /opt/venv with CPU-only torch and the project installed (not editable)
# ---------------------------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv

# torch and torchvision from PyTorch's CPU index: PyPI's torch pulls GBs of CUDA libraries and its
# torchvision is a CUDA build. The pins must match pyproject.toml (a test checks this).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --index-url "${TORCH_INDEX_URL}" torch==2.13.0 torchvision==0.28.0

# Dependencies in their own layer, keyed on pyproject.toml only: empty package stubs stand in for the
# source so that a code change does not reinstall 1 GB of wheels.
WORKDIR /src
COPY pyproject.toml README.md ./
RUN --mount=type=cache,target=/root/.cache/pip \
    for pkg in pawstream stream producers api training bench stack; do \
        mkdir -p "$pkg" && touch "$pkg/__init__.py"; \
    done \
    && pip install . \
    && pip uninstall -y pawstream

COPY pawstream ./pawstream
COPY stream ./stream
COPY producers ./producers
COPY api ./api
COPY training ./training
COPY bench ./bench
COPY stack ./stack
RUN pip install --no-deps . \
    && pawstream --help > /dev/null

# ---------------------------------------------------------------------------------------------------
# runtime: the venv only, a non-root user, tini as PID 1 so SIGTERM reaches the worker
# ---------------------------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS runtime

# git: DVC and MLflow record the commit when training runs on a mounted repository.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini git \
    && rm -rf /var/lib/apt/lists/* \
    && git config --system --add safe.directory '*'

ARG UID=10001
ARG GID=10001
RUN groupadd --system --gid "${GID}" pawstream \
    && useradd --system --uid "${UID}" --gid pawstream --home-dir /app --shell /usr/sbin/nologin pawstream

COPY --from=builder /opt/venv /opt/venv

# /app/models is where compose mounts the model artifacts (read-only); /app/var holds the API's
# SQLite store and Faust's local data, owned by the app user so named volumes inherit it.
WORKDIR /app
RUN mkdir -p /app/models /app/var \
    && chown -R pawstream:pawstream /app

# The worker's exporter binds loopback by default; in a container it must answer the scraper's
# container (the container's network namespace is the boundary; publish its port deliberately).
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TORCH_HOME=/app/var/torch \
    MPLCONFIGDIR=/tmp/matplotlib \
    HEALTHCHECK_URL=http://127.0.0.1:9101/healthz \
    PAWSTREAM_WORKER__METRICS_HOST=0.0.0.0

USER pawstream:pawstream
EXPOSE 8000 9101 9102

# The default probes the worker's /healthz (its event loop is alive) on its metrics port;
# compose sets HEALTHCHECK_URL (or its own healthcheck) per role: the API's /healthz, the monitor's metrics port.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTHCHECK_URL'], timeout=4)"]

ENTRYPOINT ["tini", "--"]
CMD ["pawstream", "--help"]
