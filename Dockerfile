# syntax=docker/dockerfile:1
# One image for reelflow's API (the default command) and its worker (`reelflow worker`); see
# docker-compose.temporal.yml and the README's "Running in production".
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    STATE_DIR=/data

RUN python -m venv /opt/venv
WORKDIR /app

# Dependencies first, read from pyproject.toml alone, so a code change does not reinstall them.
# All of them ship manylinux wheels (PyAV bundles FFmpeg, pgserver PostgreSQL, asyncpg and
# cryptography are prebuilt): no compiler and no apt packages.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The project, installed editable: migrations/, examples/ and api/ui/ are read from beside the
# code (reelflow/db/migrate.py, api/routes/ui.py), which a copy in site-packages would lose.
COPY . .
RUN pip install --no-deps -e .

# The code stays root-owned and read-only to the service; it writes only to /data (STATE_DIR:
# the local object store and, if WEBHOOK_TOKEN_SECRET is unset, the webhook token secret).
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home reelflow \
    && mkdir /data \
    && chown reelflow:reelflow /data
USER reelflow

# 3000: the API (API_PORT); 9464: the worker's metrics (WORKER_METRICS_PORT).
EXPOSE 3000 9464
CMD ["reelflow", "api"]
