# syntax=docker/dockerfile:1
# CES image: one image for every CES process; the subcommand picks the process.
#   docker build -t ces:local .
#   docker run --rm ces:local worker | gateway | provider-sim | db upgrade
# Configure it with CES_* environment variables (see ces/settings.py and docker-compose.kafka.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# An unprivileged user; /app is its writable working directory (Faust keeps `<app_id>-data/` there).
RUN groupadd --system --gid 10001 ces \
    && useradd --system --uid 10001 --gid ces --home-dir /app --shell /usr/sbin/nologin ces \
    && install -d -o ces -g ces /app

# Install the package from pyproject.toml. README.m[d] copies README.md when it exists and is skipped otherwise.
WORKDIR /tmp/ces-src
COPY pyproject.toml README.m[d] ./
COPY ces ./ces
COPY cesdev ./cesdev
RUN pip install . && cd / && rm -rf /tmp/ces-src

WORKDIR /app
USER ces:ces

# In a container the HTTP servers must listen on all interfaces to be reachable from outside it.
ENV CES_GATEWAY_HOST=0.0.0.0 \
    CES_STACK_DIR=/app/.stack

# 8080: `ces gateway`; 8090: `ces provider-sim`.
EXPOSE 8080 8090

ENTRYPOINT ["ces"]
CMD ["--help"]
