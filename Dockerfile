# One image for web, worker and beat: the command chooses the role.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY web ./web
COPY worker ./worker
COPY shared ./shared
RUN pip install . && useradd --system --uid 10001 app
USER app
EXPOSE 8080
CMD ["session-analytics", "serve", "--host", "0.0.0.0", "--port", "8080"]
