# l3tol1 as a container: tails /data/in/l3.csv and keeps /data/out/l1.csv up to date, resuming from
# /data/state/l3tol1.ckpt after any stop. Build: `docker build -t l3tol1 .`; run: see docs/deployment.md
# ("Running in Docker / compose") or docker-compose.yml. Options are L3TOL1_* variables (below,
# overridable with -e) or flags after the image name (`docker run l3tol1 --log-level debug`).
#
# Two stages: the compiled core (Cython, C) is built into wheels where a compiler is, and the
# runtime image installs those wheels without one. Both stages use the same Debian release, since
# the wheel links against its glibc.
ARG PYTHON=3.11
ARG DEBIAN=bookworm

FROM python:${PYTHON}-${DEBIAN} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    L3TOL1_REQUIRE_COMPILED=1
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY service/ service/
# L3TOL1_REQUIRE_COMPILED: a core that fails to compile fails the build (never a silent
# fallback to the Python core in an image). The wheels of the dependencies are built here too.
RUN pip wheel --no-cache-dir --wheel-dir /wheels . \
    && python -m zipfile -l /wheels/l3tol1-*.whl | grep -q 'l3tol1/core/_compiled\..*\.so'

FROM python:${PYTHON}-slim-${DEBIAN}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# A fixed, unprivileged user (numeric, so that runAsNonRoot-style checks can verify it).
RUN groupadd --gid 10001 l3tol1 \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin l3tol1

# The wheels of the build stage only (no compiler here); then the compiled core must load. They
# are bind-mounted from the build stage for this one step, never copied: a copied directory stays
# in its layer (about 69 MB) whatever a later `rm` does.
RUN --mount=type=bind,from=build,source=/wheels,target=/tmp/wheels \
    pip install --no-cache-dir --no-index --find-links=/tmp/wheels l3tol1 \
    && python -c "import l3tol1.core._compiled"

# /data/in is read (mount the feed there, read-only is fine); /data/out and /data/state are
# written by the service, so they belong to its user.
RUN mkdir -p /data/in /data/out /data/state \
    && chown 10001:10001 /data/out /data/state
VOLUME ["/data"]
WORKDIR /data

ENV L3TOL1_INPUT_FILE=/data/in/l3.csv \
    L3TOL1_OUTPUT_FILE=/data/out/l1.csv \
    L3TOL1_CHECKPOINT=/data/state/l3tol1.ckpt \
    L3TOL1_FOLLOW=true \
    L3TOL1_LOG_FORMAT=json \
    L3TOL1_LOG_LEVEL=info \
    L3TOL1_METRICS_PORT=9108 \
    L3TOL1_METRICS_HOST=0.0.0.0

USER 10001:10001
# Metrics on /metrics and health on /healthz, on all the container's addresses (so that a published
# port reaches them; the health check itself asks 127.0.0.1).
EXPOSE 9108

# SIGTERM (docker stop) makes l3tol1 flush, fsync, checkpoint and exit 0 within a few seconds.
# The exec form makes l3tol1 itself PID 1, so it receives the signal (no shell in between).
STOPSIGNAL SIGTERM
ENTRYPOINT ["l3tol1"]

# Healthy while /healthz answers 2xx; a 503 (pipeline stalled) or no answer raises, exit 1.
# Python's urllib, since the slim image has no curl; the port is read from the environment.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ['L3TOL1_METRICS_PORT'], timeout=4).close()"]
