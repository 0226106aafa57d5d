# The hub as a container image: `hub` is the entry point (`hub worker`, `hub db upgrade`,
# `hub config check`); the web service runs gunicorn from the same image (see compose.yaml).
#   docker build -t abandonment-hub .

# --- build: the wheel and its pinned dependencies in a virtual environment -------------------
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md LICENSE ./
COPY hub ./hub
COPY plugins ./plugins
COPY deploy/install.sh ./deploy/install.sh
RUN sh deploy/install.sh /opt/abandonment-hub

# --- run: the environment only, as an unprivileged user ---------------------------------------
FROM python:3.12-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/abandonment-hub --create-home hub
COPY --from=build /opt/abandonment-hub /opt/abandonment-hub
ENV PATH=/opt/abandonment-hub/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HUB_CONFIG_DIR=/etc/abandonment-hub \
    HUB_VAR_DIR=/var/lib/abandonment-hub/var
WORKDIR /var/lib/abandonment-hub
USER hub
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)" || exit 1
ENTRYPOINT ["hub"]
CMD ["--help"]
