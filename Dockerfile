# Control-plane image: the API, the worker and the provider gateway share it; the
# compose file picks the command. (Tenant runtimes use runtime/Dockerfile.)
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN pip install --no-cache-dir uv==0.13.9 \
 && useradd --uid 10000 --create-home --shell /usr/sbin/nologin tcc
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY . .
RUN uv sync --frozen --no-dev && chown -R tcc /app
USER tcc
ENV PATH=/app/.venv/bin:$PATH TCC_DATA_DIR=/data TCC_API_HOST=0.0.0.0 TCC_API_PORT=8000
EXPOSE 8000 8100
CMD ["python", "-m", "api"]
