# mimecast-collector container image.
#   docker build -t mimecast-collector .
#   docker run --read-only -v mc-state:/var/lib/mimecast-collector \
#     -v ./collector.toml:/etc/mimecast-collector/collector.toml:ro mimecast-collector
# The install step is README's production install, which CI runs as written.

FROM python:3.11-slim AS build
# --build-arg MIMECAST_COLLECTOR_COMPILE=1 compiles the per-event code with mypyc (README: Performance);
# the compiler is needed in this stage only.
ARG MIMECAST_COLLECTOR_COMPILE=0
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY build_support ./build_support
COPY collector ./collector
RUN if [ "$MIMECAST_COLLECTOR_COMPILE" = 1 ]; then \
      apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev; \
    fi \
 && python -m venv /opt/mimecast-collector && /opt/mimecast-collector/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN groupadd --system --gid 10001 mimecast \
 && useradd --system --uid 10001 --gid mimecast --home-dir /var/lib/mimecast-collector --shell /usr/sbin/nologin mimecast \
 && install -d -o mimecast -g mimecast -m 0750 /var/lib/mimecast-collector /var/log/mimecast \
 && install -d -m 0755 /etc/mimecast-collector
COPY --from=build /opt/mimecast-collector /opt/mimecast-collector
# No .pyc writes and no temp files: the image runs with a read-only root filesystem.
ENV PATH=/opt/mimecast-collector/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER mimecast:mimecast
WORKDIR /var/lib/mimecast-collector
VOLUME ["/var/lib/mimecast-collector", "/var/log/mimecast"]
# The health endpoint: set [service] listen = "0.0.0.0:9464" in the mounted config.
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["mimecast-collector"]
CMD ["run", "--config", "/etc/mimecast-collector/collector.toml", "--log-format", "json"]
