# One image for web, worker and beat: the command chooses the role.
# Two stages: the first builds a virtualenv, the second carries only that virtualenv. The pinned,
# hash-checked dependencies are installed before any code is copied, so a code change rebuilds
# the last two layers only; requirements.lock is kept current by `make lock`.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY web ./web
COPY worker ./worker
COPY shared ./shared
# --no-deps: everything it needs is in the lock; no `demo` extra (its test-double store).
RUN pip install --no-deps . && python -c "import web.cli, worker"

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH
RUN useradd --system --uid 10001 --home-dir /app app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER app
EXPOSE 8080
CMD ["session-analytics", "serve", "--host", "0.0.0.0", "--port", "8080"]
