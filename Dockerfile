# splitter as an edge or sidecar container: the compiled build (mypyc), a non-root user,
# state under /var/lib/splitter, a read-only root file system possible.
#
#   docker build -t splitter .
#   docker run --read-only -v splitter-state:/var/lib/splitter -p 8080:8080 \
#       -v $PWD/my.yaml:/etc/splitter/splitter.yaml:ro splitter
#
# BASE is the image of both stages; BUILD_BASE (default: BASE) only of the build stage,
# for a base that already has a C compiler. Without a registry, scripts/container-base
# makes both from Debian packages (see tests/test_container.py for the podman command).
ARG BASE=python:3.11-slim
ARG BUILD_BASE=${BASE}

FROM ${BUILD_BASE} AS build
# mypyc compiles the request path to C: a compiler in this stage only (python:*-slim has
# Python's headers but no compiler; a base with gcc already is used as it is).
RUN if ! command -v gcc >/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends gcc libc6-dev \
        && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY splitter ./splitter
# A virtual environment, copied whole into the final stage (same base, same Python path).
# The build fails unless the compiled modules are the ones that load.
RUN python3 -m venv /opt/splitter \
    && /opt/splitter/bin/pip install --no-cache-dir --disable-pip-version-check . \
    && /opt/splitter/bin/pip uninstall --yes --quiet pip setuptools \
    && /opt/splitter/bin/splitter --version | tee /dev/stderr | grep -q '(compiled)'

FROM ${BASE}
# The system's CA certificates, against which https:// backends and rediss:// are verified,
# come with the base: python:*-slim installs Debian's ca-certificates (another BASE needs
# it too; scripts/container-base includes it).
# A numeric USER, so that Kubernetes' runAsNonRoot can check it without a runAsUser.
RUN groupadd --gid 10001 splitter \
    && useradd --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/splitter --shell /usr/sbin/nologin splitter \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/splitter \
    && install -d -m 0755 /etc/splitter
COPY --from=build /opt/splitter /opt/splitter
COPY config/splitter.yaml /etc/splitter/splitter.yaml
# The config is read from /etc/splitter/splitter.yaml (mount yours there, read-only; mount
# a directory such as a Kubernetes ConfigMap and point SPLITTER_CONFIG or --config at the
# file in it). A relative state_file, like the default ./splitter-state.json, lands in
# the working directory /var/lib/splitter: the one path that must be writable.
ENV PATH=/opt/splitter/bin:$PATH \
    SPLITTER_CONFIG=/etc/splitter/splitter.yaml \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /var/lib/splitter
USER 10001:10001
# proxy (listen), admin API (admin.listen, loopback by default), metrics.listen
EXPOSE 8080 9901 9902
# /healthz on the admin listener inside the container; set SPLITTER_HEALTH_URL when
# admin.listen is not 127.0.0.1:9901 (or to use metrics.listen).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request as u; u.urlopen(os.environ.get('SPLITTER_HEALTH_URL', 'http://127.0.0.1:9901/healthz'), timeout=2)"]
# `docker run IMAGE` runs the proxy; `docker run IMAGE check`, `IMAGE --version` and
# `IMAGE ctl weights` work too. splitter is PID 1 and handles SIGTERM itself (contract 4b).
ENTRYPOINT ["splitter"]
CMD ["run"]
