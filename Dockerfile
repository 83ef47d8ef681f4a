# syntax=docker/dockerfile:1.7
#
# civic-ledger container image.
#
#   docker build -t civic-ledger:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg VCS_REF="$(git rev-parse HEAD)" .
#   docker run --rm -p 8000:8000 -e DATABASE_URL=postgresql://... civic-ledger:0.1.0            # API
#   docker run --rm -p 9000:9000 -e DATABASE_URL=postgresql://... civic-ledger:0.1.0 project    # projector
#   docker run --rm -e DATABASE_URL=postgresql://... civic-ledger:0.1.0 migrate                 # migrations
#
# Configured entirely by environment variables (docs/operations.md). The runtime stage runs as
# uid/gid 10001, needs no writable path but /tmp (mount an emptyDir there when the root
# filesystem is read-only) and has no HEALTHCHECK: Kubernetes probes /health/live and
# /health/ready instead.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
# builder: resolve and install everything into a self-contained virtualenv at /opt/venv
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_PREFER_BINARY=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv \
 && pip install --upgrade pip setuptools wheel

WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when pyproject.toml changes, not on
# every source edit. (tomllib is in the 3.11 standard library.)
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt

# Then the project itself (packages domain, services, projections, infra with its SQL migrations).
# README.md is read by the build backend (project.readme). .dockerignore keeps everything else out.
COPY README.md ./
COPY domain ./domain
COPY services ./services
COPY projections ./projections
COPY infra ./infra
COPY civic_verify ./civic_verify
RUN pip install --no-deps . \
 && python -m compileall -q /opt/venv \
 && civic --help > /dev/null \
 && python -c "import importlib.resources as r; assert any(p.name.endswith('.sql') for p in r.files('infra.migrations').iterdir()), 'migrations not packaged'"

# ---------------------------------------------------------------------------------------------
# runtime: slim, no compilers, no pip cache, non-root
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG VERSION=0.1.0
ARG VCS_REF=unknown
ARG BUILD_DATE=unknown

LABEL org.opencontainers.image.title="civic-ledger" \
      org.opencontainers.image.description="Event-sourced, multi-tenant ledger API for grassroots governance" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}" \
      org.opencontainers.image.documentation="docs/operations.md"

RUN groupadd --system --gid 10001 civic \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin civic

COPY --from=builder /opt/venv /opt/venv

# HOME and CIVIC_DATA_DIR point into /tmp, the only writable path under readOnlyRootFilesystem.
# HOST=0.0.0.0: inside a container the server must listen on all interfaces.
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONFAULTHANDLER=1 \
    HOME=/tmp \
    HOST=0.0.0.0 \
    PORT=8000 \
    CIVIC_DATA_DIR=/tmp/civic-data

WORKDIR /tmp
USER 10001:10001

# 8000: API (also /health/*, /metrics); 9000: `civic project` health and metrics.
EXPOSE 8000 9000

STOPSIGNAL SIGTERM
ENTRYPOINT ["civic"]
CMD ["serve"]
