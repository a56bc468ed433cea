# syntax=docker/dockerfile:1
# The evictwatch operator image. Build from the repository root:
#   docker build -t <registry>/evictwatch:0.1.0 .
# Two stages: the builder makes a wheel and installs it with its dependencies into a virtual
# environment; the final image holds only that environment on the same slim Python base,
# runs as the unprivileged user 10001, and has no compiler or build tool.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# .dockerignore lets in only pyproject.toml, README.md, LICENSE and src/.
COPY . .
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/evictwatch \
    && /opt/evictwatch/bin/python -m pip install --only-binary=:all: /wheels/*.whl \
    && /opt/evictwatch/bin/python -m pip uninstall --yes pip \
    && /opt/evictwatch/bin/evictwatch --version

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="evictwatch" \
      org.opencontainers.image.description="Capture every Kubernetes Pod eviction: who asked, why, and what came of it." \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 evictwatch \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin evictwatch
COPY --from=builder /opt/evictwatch /opt/evictwatch
ENV PATH=/opt/evictwatch/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Numeric, so that Kubernetes can check runAsNonRoot without reading /etc/passwd.
USER 10001:10001
EXPOSE 9443 8080
ENTRYPOINT ["evictwatch"]
CMD ["run", "--config", "/etc/evictwatch/config.yaml"]
