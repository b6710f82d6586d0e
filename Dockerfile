# splitter as a sidecar or edge container.
#   docker build -t splitter .
#   docker run -p 8080:8080 -v $PWD/my.yaml:/etc/splitter/splitter.yaml:ro splitter
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY splitter ./splitter
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/splitter --create-home splitter \
    && mkdir -p /etc/splitter
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY config/splitter.yaml /etc/splitter/splitter.yaml
ENV SPLITTER_CONFIG=/etc/splitter/splitter.yaml \
    PYTHONUNBUFFERED=1
WORKDIR /var/lib/splitter
USER splitter
EXPOSE 8080 9901
HEALTHCHECK --interval=10s --timeout=2s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9901/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["splitter", "run"]
CMD ["--config", "/etc/splitter/splitter.yaml"]
