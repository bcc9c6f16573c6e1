# The phala-sync image: the CLI (`phala-sync`), the Prefect flow, and Prefect itself (the compose
# stack runs its Prefect server from this image too, so server and client share the pinned versions
# that work together; see pyproject.toml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false

WORKDIR /src
COPY pyproject.toml README.md ./
COPY sync ./sync
COPY models ./models
COPY flows ./flows
COPY simulator ./simulator
COPY migrations ./migrations
RUN pip install . && rm -rf /src

RUN useradd --create-home --uid 10001 phala
USER phala
WORKDIR /home/phala
ENV PREFECT_HOME=/home/phala/.prefect

CMD ["phala-sync", "--help"]
