# syntax=docker/dockerfile:1
#
# The recorder daemon as a container image.
#
# Build:  docker build -t recorder .
# Tested without Docker or a registry by scripts/container_test: podman with the runc runtime,
# --format docker (keeps the HEALTHCHECK), PYTHON_IMAGE a Debian bookworm base made with mmdebstrap.
# Run:    docker run -d --name recorder --restart unless-stopped --stop-timeout 60 \
#           -v recorder-data:/data -p 127.0.0.1:9464:9464 \
#           -e RECORDER_SOURCE__SYMBOLS=BTCUSDT,ETHUSDT recorder
# With a settings file instead of (or besides) environment variables:
#           -v "$PWD/recorder.toml:/etc/recorder/recorder.toml:ro" \
#           -e RECORDER_CONFIG=/etc/recorder/recorder.toml
# Precedence: settings file < RECORDER_* environment < command-line flags; the RECORDER_STORAGE__ROOT
# and RECORDER_METRICS__ADDRESS set below therefore win over the file: override them with -e.
#
# Stopping: `docker stop` sends SIGTERM, then SIGKILL after 10 s unless told otherwise. The final
# flush may itself take up to [service] stop_timeout (10 s by default), so give the container more:
# `docker run --stop-timeout 60`, or `stop_grace_period: 60s` in Compose. A SIGKILL loses nothing
# that was flushed (the next start recovers it), but it makes the next start slower.

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: a wheel of the project, installed with its dependencies into a virtual environment.
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
# Only what the wheel is built from (see .dockerignore): tests and local data stay out.
COPY pyproject.toml README.md ./
COPY recorder ./recorder
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/recorder \
    && /opt/recorder/bin/pip install /wheels/*.whl

# --- runtime: the virtual environment alone, run by an unprivileged user.
FROM ${PYTHON_IMAGE} AS runtime

# A fixed numeric id, so that volume permissions and `runAsNonRoot` checks are predictable.
ARG RECORDER_UID=10001
RUN groupadd --system --gid "${RECORDER_UID}" recorder \
    && useradd --system --uid "${RECORDER_UID}" --gid recorder --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin recorder \
    && mkdir -p /data/dataset /etc/recorder \
    && chown -R recorder:recorder /data

COPY --from=build /opt/recorder /opt/recorder

# MALLOC_ARENA_MAX=2: freed memory is reused instead of kept in one idle arena per thread
# (measured in docs/performance.md).
ENV PATH=/opt/recorder/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MALLOC_ARENA_MAX=2 \
    RECORDER_STORAGE__ROOT=/data/dataset \
    RECORDER_METRICS__ADDRESS=0.0.0.0:9464

# The dataset: keep it on a named volume or a bind mount, never in the container's own layer.
# The root is a directory inside the volume, not the volume itself, so that `recorder compact`
# can build its partitions beside the root (/data/.dataset.compact) on the same file system.
VOLUME ["/data"]
WORKDIR /data

# Prometheus metrics and /healthz. Inside the container the server listens on all interfaces so
# that the port can be published; publish it on loopback (-p 127.0.0.1:9464:9464) unless a
# Prometheus on another host must reach it.
EXPOSE 9464

USER ${RECORDER_UID}:${RECORDER_UID}

# No curl in the slim image: Python's urllib asks /healthz on the port of
# RECORDER_METRICS__ADDRESS. A 503 (unhealthy) or no answer raises, and the exit status is 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('RECORDER_METRICS__ADDRESS', ':9464').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).close()"]

# SIGTERM starts the final flush; the recorder exits 0 after a clean stop.
STOPSIGNAL SIGTERM

ENTRYPOINT ["recorder"]
CMD ["run"]
