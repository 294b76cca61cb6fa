# syntax=docker/dockerfile:1
#
# syncstatus service image.
#
#   docker build -t syncstatus:0.1.0 .
#   docker run --rm -e SYNCSTATUS_DATABASE_URL=... -e SYNCSTATUS_BOOTSTRAP_SERVERS=... syncstatus:0.1.0
#
# Entrypoint is the `syncstatus` CLI; the default command is `run` (the service). Other commands
# run the same way: `docker run --rm ... syncstatus:0.1.0 migrate`, `... history CONNECTION_ID`.
#
# Only the service's own dependencies, exactly as requirements/runtime.txt locks them: the
# embedded PostgreSQL and Tansu broker that `syncstatus dev` and the tests start are the
# optional `dev` extra, not installed here.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the project's wheel, built with the locked setuptools ----------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the wheel is built from (see .dockerignore); README.md is the package's readme.
COPY requirements/build.txt ./requirements/
RUN pip install --require-hashes --root-user-action=ignore -r requirements/build.txt
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .

# --- runtime: the installed wheel, nothing else ----------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed numeric uid/gid, so orchestrators can check runAsNonRoot and volumes can be chowned.
RUN groupadd --system --gid 10001 syncstatus \
    && useradd --system --uid 10001 --gid syncstatus --create-home --home-dir /home/syncstatus \
        --shell /usr/sbin/nologin syncstatus

# The runtime lock, hashes checked (the versions CI tested), then the project's wheel alone. Both
# are bind-mounted, so neither lands in a layer of this stage.
RUN --mount=type=bind,source=requirements/runtime.txt,target=/tmp/runtime.txt \
    --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --require-hashes --root-user-action=ignore -r /tmp/runtime.txt \
    && pip install --no-deps --no-index --root-user-action=ignore /wheels/syncstatus-*.whl \
    && syncstatus --help > /dev/null

WORKDIR /home/syncstatus
USER 10001:10001

# /metrics, /healthz and /readyz (SYNCSTATUS_METRICS_PORT, default 9108); `syncstatus api` on
# SYNCSTATUS_API_PORT (8080). If you change the metrics port, change the HEALTHCHECK below too
# (docker-compose.yml gives each service its own).
EXPOSE 9108 8080

# /healthz answers 200 while the service's loops run, 503 once one has died or it is stopping.
# urlopen raises on anything but 2xx or on a refused connection, so python exits non-zero.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4)"]

# SIGTERM (Docker's default stop signal) makes `syncstatus run` finish and commit the batch in
# hand, let the relays finish their round, and exit 0. Give it time: see stop_grace_period in
# docker-compose.yml (docker stop's default 10 s is shorter than the producer's 30 s retry).
STOPSIGNAL SIGTERM

ENTRYPOINT ["syncstatus"]
CMD ["run"]
